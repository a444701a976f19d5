package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/skiff-logs/skiff/agent/config"
	"github.com/skiff-logs/skiff/outputs/elasticsearch"
	"github.com/skiff-logs/skiff/outputs/gzipfile"
)

// errFirstLine stops a read after the first line.
var errFirstLine = errors.New("first line read")

// cmdReplay is `skiff replay --config F --dir D`: it sends the fallback spool files in D (oldest
// name first) to the config's first elasticsearch output and exits. Only spool files are
// accepted: gzip archives of the file output hold documents without ids, which could not be
// re-sent without risking duplicates.
func cmdReplay(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "path to the YAML config file")
	dir := fs.String("dir", "", "directory of spool files (*.gz) to replay")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *path == "" || *dir == "" {
		fmt.Fprintln(stderr, "skiff replay: --config FILE and --dir DIR are required")
		return 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		printConfigError(stderr, *path, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, err := replayDir(ctx, cfg, *dir, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "skiff replay: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "replayed %d files from %s\n", n, *dir)
	return 0
}

// replayDir replays the spool files of dir through cfg's first elasticsearch output.
func replayDir(ctx context.Context, cfg *config.Config, dir string, stderr io.Writer) (int, error) {
	var oc *config.Output
	for i := range cfg.Outputs {
		if cfg.Outputs[i].Type == "elasticsearch" {
			oc = &cfg.Outputs[i]
			break
		}
	}
	if oc == nil {
		return 0, errors.New("the config has no elasticsearch output")
	}
	paths, err := spoolPaths(dir)
	if err != nil {
		return 0, err
	}
	out, err := newOutput(*oc, cfg.DataDir, newLogger(stderr, cfg.LogLevel))
	if err != nil {
		return 0, fmt.Errorf("output %s: %w", oc.Name, err)
	}
	es := out.(*elasticsearch.Output)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- es.Run(runCtx) }()
	err = es.ReplayFiles(ctx, paths)
	closeCtx, cancelClose := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelClose()
	err = errors.Join(err, es.Close(closeCtx), <-ran)
	return len(paths), err
}

// spoolPaths lists the *.gz files of dir by name (spool names are creation times) and checks that
// each starts with a bulk action line.
func spoolPaths(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	var paths []string
	for _, e := range ents {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".gz") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		var first []byte
		_, err := gzipfile.ReadAll(p, func(line []byte) error {
			first = append(first, line...)
			return errFirstLine
		})
		if err != nil && !errors.Is(err, errFirstLine) {
			return nil, fmt.Errorf("read %s: %w", p, err)
		}
		if len(first) > 0 && !bytes.HasPrefix(first, []byte(`{"create":`)) {
			return nil, fmt.Errorf("%s: not a spool file (its lines are not bulk actions); archives of the file output hold documents without ids and cannot be replayed without risking duplicates", p)
		}
		paths = append(paths, p)
	}
	slices.Sort(paths)
	return paths, nil
}
