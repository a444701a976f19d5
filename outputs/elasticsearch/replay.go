package elasticsearch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/skiff-logs/skiff/outputs/gzipfile"
)

// defaultReplayEvery is how often the replayer looks at the spool (and, while requests fail,
// probes Elasticsearch).
const defaultReplayEvery = time.Second

// errStopReplay stops a scan when the output is closing or aborted.
var errStopReplay = errors.New("replay stopped")

// replayer re-sends spool files, oldest first, member by member, with one worker of its own: one
// bulk request at a time, in one of the request slots it shares with the live workers. progress, the end offset of the members of a
// file already acknowledged, lives in memory only: after a crash the members are sent again and
// answered 409.
type replayer struct {
	o        *Output
	w        *worker
	progress map[string]int64
}

func newReplayer(o *Output) *replayer {
	w := newWorker(o)
	w.replay = true
	return &replayer{o: o, w: w, progress: map[string]int64{}}
}

// run replays whenever the spool holds files and Elasticsearch answers, until the output closes.
func (r *replayer) run() {
	o := r.o
	t := time.NewTicker(o.replayEvery)
	defer t.Stop()
	for {
		select {
		case <-o.closing:
			return
		case <-o.abortCtx.Done():
			return
		case <-t.C:
		}
		if o.spool.empty() || !r.answers() {
			continue
		}
		paths, err := o.spool.seal()
		if err != nil {
			o.cfg.Logger.Error("list fallback spool", "output", o.cfg.Name, "error", err)
			continue
		}
		for _, p := range paths {
			if !r.file(p) {
				break
			}
		}
	}
}

// healthPath is the probe of answers: cheap, and answered without waiting for anything.
const healthPath = "/_cluster/health?filter_path=status"

// answers reports whether Elasticsearch answers: requests are not failing, or a cluster health
// request succeeds.
func (r *replayer) answers() bool {
	o := r.o
	if o.failingSince.Load() == 0 {
		return true
	}
	ctx, cancel := context.WithTimeout(o.abortCtx, o.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, healthPath, nil)
	if err != nil {
		return false
	}
	res, err := o.client.Perform(req)
	if err != nil {
		return false
	}
	_ = res.Body.Close()
	if res.StatusCode/100 != 2 {
		return false
	}
	o.requestSucceeded()
	return true
}

// file replays the spool file at path. When every item of it is acknowledged it is deleted — or, when it had torn bytes, moved to the corrupt directory after its complete
// members were replayed. It returns false when replay must stop: the output is closing, or the
// file could not be read.
func (r *replayer) file(path string) bool {
	o := r.o
	log := o.cfg.Logger
	done := r.progress[path]
	complete, err := gzipfile.Scan(path, func(data []byte, end int64) error {
		if end <= done {
			return nil
		}
		if !r.member(data) {
			return errStopReplay
		}
		done = end
		r.progress[path] = end
		return nil
	})
	if errors.Is(err, errStopReplay) {
		return false
	}
	if err != nil {
		log.Error("read spool file; will try again", "output", o.cfg.Name, "path", path, "error", err)
		return false
	}
	delete(r.progress, path)
	to := ""
	if !complete {
		to = filepath.Join(o.spool.corrupt, o.cfg.Name+"-"+filepath.Base(path))
		log.Error("SPOOL FILE CORRUPT: torn or damaged bytes skipped; its complete members were replayed and the file moved aside",
			"output", o.cfg.Name, "path", path, "moved_to", to)
	}
	if err := o.spool.remove(path, to); err != nil {
		log.Error("remove replayed spool file", "output", o.cfg.Name, "error", err)
		return false
	}
	return true
}

// member sends the bulk lines of one spool member until every item is acknowledged (delivered,
// already there, or rejected to the dead-letter file). False: the output is closing or aborted.
func (r *replayer) member(data []byte) bool {
	w := r.w
	w.body = append(w.body[:0], data...)
	if n := len(w.body); n > 0 && w.body[n-1] != '\n' {
		w.body = append(w.body, '\n')
	}
	w.items = w.items[:0]
	for off := 0; off < len(w.body); {
		end := off
		for range 2 { // action line, document line
			k := bytes.IndexByte(w.body[end:], '\n')
			if k < 0 {
				end = len(w.body)
				break
			}
			end += k + 1
		}
		w.items = append(w.items, item{off: off, end: end})
		off = end
	}
	if len(w.items) == 0 {
		return true
	}
	w.stopped = false
	w.deliver(w.items)
	return !w.stopped
}

// ReplayFiles sends the spool files at paths (oldest first) through the output, which must be
// running: each file member by member, retrying until every item is acknowledged (delivered,
// already present, or rejected to the dead-letter file). The files are left in place. It returns
// an error when the output closed before the end, or a file could not be read; a file with torn
// bytes is replayed as far as its complete members go and reported in the error.
func (o *Output) ReplayFiles(ctx context.Context, paths []string) error {
	stop := context.AfterFunc(ctx, o.abort)
	defer stop()
	select {
	case <-o.gate:
	case <-o.abortCtx.Done():
		return fmt.Errorf("replay: output %s closed", o.cfg.Name)
	}
	r := newReplayer(o)
	var errs []error
	for _, p := range paths {
		complete, err := gzipfile.Scan(p, func(data []byte, _ int64) error {
			if !r.member(data) {
				return errStopReplay
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("replay %s: %w", p, err)
		}
		if !complete {
			errs = append(errs, fmt.Errorf("replay %s: torn or damaged bytes skipped", p))
		}
	}
	return errors.Join(errs...)
}
