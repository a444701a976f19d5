// Command skiff is a Kubernetes log shipper: it tails container logs, keeps crash-safe positions
// and ships to Elasticsearch and gzip files.
//
//	skiff run --config FILE        run until SIGINT/SIGTERM, then drain and exit 0
//	skiff validate --config FILE   check a config; non-zero exit with messages naming the keys
//	skiff demo [--es URL]          ship generated sample logs to gzip files (and Elasticsearch)
//	skiff bench                    measure the pipeline into a blackhole _bulk endpoint
//	skiff version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/skiff-logs/skiff/agent"
	"github.com/skiff-logs/skiff/agent/config"
	"github.com/skiff-logs/skiff/agent/tail"
	"github.com/skiff-logs/skiff/parsers"
	"github.com/skiff-logs/skiff/parsers/audit"
)

// version is stamped at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stderr)
	case "validate":
		return cmdValidate(args[1:], stdout, stderr)
	case "demo":
		return cmdDemo(args[1:], stdout, stderr)
	case "bench":
		return cmdBench(args[1:], stdout, stderr)
	case "replay":
		return cmdReplay(args[1:], stdout, stderr)
	case "blackhole":
		if len(args) > 1 && args[1] == "--latency" {
			return cmdBlackholeLatency(stdout)
		}
		return cmdBlackhole(stdout)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "skiff", version)
		return 0
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "skiff: unknown command %q\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  skiff run --config FILE        run until SIGINT/SIGTERM, then drain and exit
  skiff validate --config FILE   check a config file
  skiff demo [--es URL] [--out DIR]
                                 ship generated sample logs to gzip files in DIR
                                 (and to Elasticsearch at URL), then exit
  skiff bench [--size 1GiB] [--runs 3] [--gzip] [--es URL]
                                 measure the whole pipeline into a blackhole _bulk endpoint
  skiff bench --idle [--files 500] [--duration 30s]
                                 skiff's CPU with quiet files
  skiff bench --latency [--files 100] [--rate 10000] [--duration 30s]
                                 line-to-bulk latency p50/p99/max
  skiff replay --config FILE --dir DIR
                                 re-send fallback spool files from DIR to the config's
                                 first elasticsearch output, then exit
  skiff version
`)
}

func configFlag(name string, args []string, stderr io.Writer) (string, bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "path to the YAML config file")
	if err := fs.Parse(args); err != nil {
		return "", false
	}
	if *path == "" {
		fmt.Fprintf(stderr, "skiff %s: --config FILE is required\n", name)
		return "", false
	}
	return *path, true
}

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	path, ok := configFlag("validate", args, stderr)
	if !ok {
		return 2
	}
	if _, err := config.Load(path); err != nil {
		printConfigError(stderr, path, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok\n", path)
	return 0
}

func printConfigError(w io.Writer, path string, err error) {
	fmt.Fprintf(w, "skiff: invalid config %s:\n", path)
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		for _, e := range joined.Unwrap() {
			fmt.Fprintf(w, "  %v\n", e)
		}
		return
	}
	fmt.Fprintf(w, "  %v\n", err)
}

func cmdRun(args []string, stderr io.Writer) int {
	path, ok := configFlag("run", args, stderr)
	if !ok {
		return 2
	}
	cfg, err := config.Load(path)
	if err != nil {
		printConfigError(stderr, path, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runAgent(ctx, cfg, newLogger(stderr, cfg.LogLevel), nil); err != nil {
		fmt.Fprintf(stderr, "skiff: %v\n", err)
		return 1
	}
	return 0
}

// runAgent builds and runs the agent until ctx ends. started, if not nil, receives the agent once
// it is built.
func runAgent(ctx context.Context, cfg *config.Config, log *slog.Logger, started func(*agent.Agent)) error {
	a, err := agent.New(cfg, agent.Plugins{
		NewParser:      func(first []byte, max int) tail.Parser { return parsers.Detect(first, max) },
		NewOutput:      newOutput,
		NewAuditParser: func(max int) tail.Parser { return audit.New(max) },
	}, log)
	if err != nil {
		return err
	}
	if limit := agent.ApplyMemoryLimit(cfg, log); limit > 0 {
		go agent.FollowLiveHeap(ctx, limit, 5*time.Second)
	}
	if started != nil {
		started(a)
	}
	return a.Run(ctx)
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}
