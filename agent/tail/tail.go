// Package tail finds log files by glob, reads them on a few workers (each file in turn, in
// order), and hands their records, chunk by chunk, to the pipeline. It handles file identity
// (device, inode and a fingerprint of the first line), rename rotation, copytruncate, deletion
// while open, partial and overlong lines, and invalid UTF-8; it resumes from, and commits to,
// the positions store.
//
// fsnotify events wake the readers, a busy file about once per eventPause; a periodic scan
// (re-glob, one stat per open file) is the safety net, so a missed or overflowed event delays
// reading by at most one scan interval and never loses data.
package tail

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/skiff-logs/skiff/agent/event"
	"github.com/skiff-logs/skiff/agent/metrics"
	"github.com/skiff-logs/skiff/agent/positions"
)

// Defaults of Config.
const (
	DefaultMaxLineBytes    = 1 << 20
	DefaultReadBufferBytes = 256 << 10
	DefaultChunkRecords    = 1024
	DefaultScanInterval    = time.Second
	DefaultDrainGrace      = 5 * time.Second
)

// eventPause is how long Run leaves fsnotify events waiting after handling some, so that it
// takes them (and each busy file's reader reads) once per pause rather than once per write: the
// most latency events add. The first event after a quiet pause is handled at once.
var eventPause = 50 * time.Millisecond

// eventBuffer is how many fsnotify events wait for Run while it pauses (the kernel's queue,
// fs.inotify.max_queued_events, holds more; when that overflows, Run scans). At the end of a
// pause Run takes them all.
const eventBuffer = 4096

// maxChunkBytes closes a chunk early when its messages reach this size, so that a chunk of
// long lines stays small.
const maxChunkBytes = 1 << 20

// chunksInFlight is how many full-size chunks a Budget's chunk half holds at least: a chunk is
// closed when its charge reaches 1/chunksInFlight of that half. With fewer, a chunk that two
// bulk bodies share keeps its whole charge until the second body is sent, and that body waits
// for its flush interval because no further chunk fits: with a 2 MiB budget one chunk of 1 MiB
// took all of it, and throughput fell to 4k records/s (skiff bench --memory-limit 2MiB).
const chunksInFlight = 8

// minChunkBytes is the least chunk charge chunksInFlight may cut chunks to.
const minChunkBytes = 16 << 10

// retireFor is how long a file closed after rotation or deletion is not reopened when a glob
// still matches it (its last acknowledgements may still be in flight, and reopening from the
// committed position would read them twice).
const retireFor = 10 * time.Minute

// Config describes one tail input.
type Config struct {
	// Input names the input; it is the label of the input metrics.
	Input string
	// Paths are the globs (filepath.Match syntax) of the files to tail.
	Paths []string
	// Exclude drops matched paths that match one of these globs; a glob without a '/' is also
	// matched against the file's base name.
	Exclude []string
	// StartAtEnd makes files without a saved position that are found by the first scan start
	// at their end (after their last complete line). Files that appear later always start at 0.
	StartAtEnd bool
	// MaxLineBytes caps a line's length; the rest is dropped and the record flagged
	// event.FlagTruncated (default DefaultMaxLineBytes).
	MaxLineBytes int
	// ReadBufferBytes is the size of each read (default DefaultReadBufferBytes). A reader holds
	// its buffer only while it has data to process.
	ReadBufferBytes int
	// ChunkRecords caps the records per chunk (default DefaultChunkRecords).
	ChunkRecords int
	// ScanInterval is the period of the safety-net scan (default DefaultScanInterval).
	ScanInterval time.Duration
	// DrainGrace is how long a file whose path no longer leads to it (rotated or deleted) is
	// kept open after its last growth, for late writes, before it is closed (default
	// DefaultDrainGrace).
	DrainGrace time.Duration
	// NewParser creates the parser of each file generation from its first line. Required.
	NewParser NewParser
	// Describe returns the tag and Kubernetes facts of a discovered path. The tailer sets
	// IDPrefix (and Path when empty). Nil: the tag is Input.
	Describe func(path string) event.Source
	// Positions is where the tailer resumes from and commits to. Required.
	Positions *positions.Store
	// Budget, shared by the tailers of an agent, bounds the bytes of chunks read and not yet
	// acknowledged: a reader waits for room before handing on a chunk. Nil: unbounded.
	Budget *Budget
	// Logger receives the input's logs (default slog.Default()).
	Logger *slog.Logger
}

// Tailer tails the files of one input. Create it with New, then call Run once.
type Tailer struct {
	cfg    Config
	log    *slog.Logger
	m      inputMetrics
	maxBuf int
	// workingSet is what a busy reader holds besides its chunks in flight (Budget).
	workingSet int64
	// chunkBytes closes a chunk when its charge (messages and records) reaches it.
	chunkBytes int64
	bufs       sync.Pool // *[]byte of ReadBufferBytes
	mem        *recycler // the Budget's, else the Tailer's own (unbudgeted chunk memory)
	ran        atomic.Bool

	scanReq chan struct{}
	turns   turnQueue
	workers sync.WaitGroup // the workers running the readers' turns
	waiters sync.WaitGroup // goroutines waiting for a reader's predecessor to drain
	watcher *fsnotify.Watcher

	mu       sync.Mutex
	readers  map[positions.Key]*reader
	live     map[*reader]struct{} // every reader not closed yet (closeAll)
	byPath   map[string]*reader   // the reader of the file each discovered path leads to now
	byTarget map[string]*reader   // the reader of each resolved file path, for fsnotify events
	retired  map[positions.Key]retiredFile
	failed   map[string]bool // paths whose open failed, logged once
	// The watches are brought up to date when readers come or go, and every tenth scan (a
	// glob's directory may have appeared, or been deleted and recreated).
	watchesStale bool
	scans        int
}

type retiredFile struct {
	fp uint64
	at time.Time
}

// inputMetrics are the input's metric children, resolved once.
type inputMetrics struct {
	records, bytes, parseErrors, truncLines, truncBytes, invalidUTF8, lost *metrics.Counter
	open                                                                   *metrics.Gauge
}

// New validates cfg, fills in defaults and returns the tailer. It starts nothing.
func New(cfg Config) (*Tailer, error) {
	if cfg.Input == "" {
		return nil, errors.New("tail: input name is empty")
	}
	if len(cfg.Paths) == 0 {
		return nil, fmt.Errorf("tail %s: paths: none given", cfg.Input)
	}
	for i, p := range cfg.Paths {
		if _, err := filepath.Match(p, ""); err != nil {
			return nil, fmt.Errorf("tail %s: paths[%d] %q: %w", cfg.Input, i, p, err)
		}
	}
	for i, p := range cfg.Exclude {
		if _, err := filepath.Match(p, ""); err != nil {
			return nil, fmt.Errorf("tail %s: exclude[%d] %q: %w", cfg.Input, i, p, err)
		}
	}
	if cfg.NewParser == nil {
		return nil, fmt.Errorf("tail %s: no parser", cfg.Input)
	}
	if cfg.Positions == nil {
		return nil, fmt.Errorf("tail %s: no positions store", cfg.Input)
	}
	for _, c := range []struct {
		name string
		v    *int
		def  int
	}{
		{"max_line_bytes", &cfg.MaxLineBytes, DefaultMaxLineBytes},
		{"read_buffer_bytes", &cfg.ReadBufferBytes, DefaultReadBufferBytes},
		{"chunk_records", &cfg.ChunkRecords, DefaultChunkRecords},
	} {
		if *c.v < 0 {
			return nil, fmt.Errorf("tail %s: %s: must not be negative", cfg.Input, c.name)
		}
		if *c.v == 0 {
			*c.v = c.def
		}
	}
	if cfg.ScanInterval <= 0 {
		cfg.ScanInterval = DefaultScanInterval
	}
	if cfg.DrainGrace <= 0 {
		cfg.DrainGrace = DefaultDrainGrace
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	in := cfg.Input
	t := &Tailer{
		cfg:    cfg,
		log:    cfg.Logger,
		maxBuf: cfg.MaxLineBytes + cfg.ReadBufferBytes,
		// a read buffer, an arena block of about its size, a full record slice
		workingSet: 2*int64(cfg.ReadBufferBytes) + int64(cfg.ChunkRecords)*recordSize,
		chunkBytes: chunkBytesFor(cfg.Budget),
		m: inputMetrics{
			records:     metrics.InputRecords.WithLabelValues(in),
			bytes:       metrics.InputBytes.WithLabelValues(in),
			parseErrors: metrics.ParseErrors.WithLabelValues(in),
			truncLines:  metrics.TruncatedLines.WithLabelValues(in),
			truncBytes:  metrics.TruncatedBytes.WithLabelValues(in),
			invalidUTF8: metrics.InvalidUTF8.WithLabelValues(in),
			lost:        metrics.LostBytes.WithLabelValues(in),
			open:        metrics.FilesOpen.WithLabelValues(in),
		},
		scanReq:  make(chan struct{}, 1),
		readers:  make(map[positions.Key]*reader),
		live:     make(map[*reader]struct{}),
		byPath:   make(map[string]*reader),
		byTarget: make(map[string]*reader),
		retired:  make(map[positions.Key]retiredFile),
		failed:   make(map[string]bool),
	}
	if cfg.Budget != nil {
		t.mem = &cfg.Budget.mem
	} else {
		t.mem = &recycler{limit: unbudgetedRecycled}
	}
	size := cfg.ReadBufferBytes
	t.bufs.New = func() any {
		b := make([]byte, size)
		return &b
	}
	return t, nil
}

// Run discovers files and reads them until ctx ends, calling handle with each chunk of
// records, from a few workers: handle is called concurrently for different files and
// sequentially, in file order, for one file. handle may block (backpressure: that file's reading
// pauses) and must return an error only when ctx ended. The chunk's records stay valid until
// their Acks are released; the reader releases its own seal reference when handle returns.
//
// Run returns nil once ctx is done and every reader has stopped. It may be called only once.
func (t *Tailer) Run(ctx context.Context, handle func(ctx context.Context, c *event.Chunk) error) error {
	if !t.ran.CompareAndSwap(false, true) {
		return fmt.Errorf("tail %s: Run called twice", t.cfg.Input)
	}
	w, err := fsnotify.NewBufferedWatcher(eventBuffer)
	if err != nil {
		t.log.Warn("no file notifications: files are read on every scan only", "scan_interval", t.cfg.ScanInterval, "err", err)
	}
	t.watcher = w
	var events chan fsnotify.Event
	var errs chan error
	if w != nil {
		events, errs = w.Events, w.Errors
	}

	// listen is events, or nil while a pause runs.
	listen := events
	pause := time.NewTimer(time.Hour)
	pause.Stop()
	defer pause.Stop()
	t.turns.ready = make(chan struct{}, readWorkers())
	for range readWorkers() {
		t.workers.Add(1)
		go t.worker(ctx, handle)
	}
	t.scan(ctx, handle, true)
	tick := time.NewTicker(t.cfg.ScanInterval)
	defer tick.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
			t.scan(ctx, handle, false)
		case <-t.scanReq:
			t.scan(ctx, handle, false)
		case ev, ok := <-listen:
			if !ok {
				events, listen = nil, nil
				continue
			}
			t.onEvent(ev)
			listen = nil
			pause.Reset(eventPause)
		case <-pause.C:
			if t.takeEvents(events) {
				pause.Reset(eventPause)
			} else {
				listen = events
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				t.log.Debug("file notifications overflowed; scanning", "err", err)
				t.requestScan()
				continue
			}
			t.log.Warn("file notifications failed; the periodic scan goes on", "err", err)
		}
	}
	t.workers.Wait()
	t.waiters.Wait()
	t.closeAll()
	if w != nil {
		_ = w.Close()
	}
	return nil
}

// unbudgetedRecycled is what a Tailer without a Budget keeps of its acknowledged chunks'
// memory for reuse.
const unbudgetedRecycled = 4 << 20

// takeEvents handles the events waiting at the end of a pause and reports whether there were
// any (then another pause follows). Waking a reader per write of a file written line by line
// would cost far more than reading; pausing, a busy file's reader is woken once per pause.
//
// All of them: files written in turn get one event per write (the kernel merges only identical
// consecutive events), and taking only those that happen to be ready at once would leave the
// rest to pile up, so that the periodic scan, not the event, would wake most readers.
func (t *Tailer) takeEvents(events <-chan fsnotify.Event) bool {
	// Bounded, so a flood of events cannot keep Run from its other cases; the rest waits for
	// the next pause.
	for n := 0; n < 4*eventBuffer; n++ {
		select {
		case ev, ok := <-events:
			if !ok {
				return n > 0
			}
			t.onEvent(ev)
		default:
			return n > 0
		}
	}
	return true
}

func (t *Tailer) requestScan() {
	select {
	case t.scanReq <- struct{}{}:
	default:
	}
}

// onEvent wakes the reader of the file an event names, and rescans on creations, renames and
// removals (a rotation or a new file).
func (t *Tailer) onEvent(ev fsnotify.Event) {
	t.mu.Lock()
	r := t.byTarget[ev.Name]
	t.mu.Unlock()
	if r != nil {
		r.poke()
	}
	if ev.Has(fsnotify.Create) || ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
		t.requestScan()
	}
}

// glob returns the paths the globs match now, without the excluded ones, sorted.
func (t *Tailer) glob() []string {
	var out []string
	for _, p := range t.cfg.Paths {
		m, _ := filepath.Glob(p) // patterns were validated in New
		for _, path := range m {
			if !t.excluded(path) {
				out = append(out, path)
			}
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

func (t *Tailer) excluded(path string) bool {
	for _, x := range t.cfg.Exclude {
		if ok, _ := filepath.Match(x, path); ok {
			return true
		}
		if !strings.Contains(x, "/") {
			if ok, _ := filepath.Match(x, filepath.Base(path)); ok {
				return true
			}
		}
	}
	return false
}

// scan is the safety net and the discovery: it stats the path of every open reader (waking
// those whose file changed size or whose path no longer leads to them), opens readers for new
// files, and updates the directory watches. initial marks the first scan of Run.
func (t *Tailer) scan(ctx context.Context, handle handleFunc, initial bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	// Watch first, glob second: a file created in between is both found and announced.
	if t.scans%10 == 0 || t.watchesStale {
		t.updateWatches()
	}
	t.scans++
	matches := t.glob()
	now := time.Now()

	for _, r := range t.readers {
		fi, err := os.Stat(r.path)
		if err != nil {
			r.gone.Store(true)
			r.poke()
			continue
		}
		if k, _ := keyOf(fi); k != r.key {
			r.gone.Store(true)
			r.poke()
			continue
		}
		r.gone.Store(false) // moved back: keep reading it as usual
		if r.gone.Load() || fi.Size() != r.readOff.Load() {
			r.poke()
		}
	}
	for k, rf := range t.retired {
		if now.Sub(rf.at) > retireFor {
			delete(t.retired, k)
		}
	}

	var known map[string][]positions.Entry
	if initial {
		known = make(map[string][]positions.Entry)
		for _, e := range t.cfg.Positions.Entries() {
			known[e.Path] = append(known[e.Path], e)
		}
	}
	for _, p := range matches {
		cur := t.byPath[p]
		if cur != nil && !cur.gone.Load() {
			continue
		}
		k, _, ok := statRegular(p)
		if !ok {
			continue
		}
		if _, open := t.readers[k]; open {
			continue
		}
		if t.isRetired(k, p) {
			continue
		}
		var after <-chan struct{}
		mode := startNew
		var prev *reader
		if initial {
			mode = startInitial
			prev = t.catchUpAfterRestart(ctx, handle, p, k, known[p])
		} else if cur != nil {
			prev = t.catchUpRotated(ctx, handle, cur, k)
		}
		if prev != nil {
			after = prev.drained
		}
		t.start(ctx, handle, p, p, "", k, mode, after, false)
	}
}

// isRetired reports whether k is a file closed after rotation that must not be reopened yet.
func (t *Tailer) isRetired(k positions.Key, path string) bool {
	rf, ok := t.retired[k]
	if !ok {
		return false
	}
	f, err := os.Open(path)
	if err != nil {
		return true
	}
	defer f.Close()
	if fp, ok, _ := fingerprint(f); ok && fp != rf.fp {
		delete(t.retired, k) // the inode was reused by a new file
		return false
	}
	return true
}

// start opens name (the file found at, or rotated away from, the discovered path) and starts
// its reader. origin is the resolved path the file had at path ("" when it is there now). It
// is called with t.mu held.
func (t *Tailer) start(ctx context.Context, handle handleFunc, path, name, origin string, k positions.Key, mode startMode, after <-chan struct{}, gone bool) *reader {
	f, err := os.Open(name)
	if err != nil {
		if !t.failed[name] {
			t.failed[name] = true
			t.log.Warn("cannot open file; retrying on every scan", "path", name, "err", err)
		}
		return nil
	}
	delete(t.failed, name)
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil
	}
	if k2, _ := keyOf(fi); k2 != k {
		// Replaced between stat and open: the next scan sees the new file.
		_ = f.Close()
		return nil
	}
	target, err := filepath.EvalSymlinks(name)
	if err != nil {
		target = filepath.Clean(name)
	}
	if origin == "" {
		origin = target
	}
	r := newReader(t, f, path, name, target, origin, k, mode, after)
	r.gone.Store(gone)
	t.readers[k] = r
	t.live[r] = struct{}{}
	if !gone {
		t.byPath[path] = r
	}
	t.byTarget[target] = r
	if t.watcher != nil {
		// Before the reader's first read, so that no write after it goes unannounced.
		if err := t.watcher.Add(filepath.Dir(target)); err != nil {
			t.log.Debug("cannot watch directory; the scan covers it", "dir", filepath.Dir(target), "err", err)
		}
	}
	t.m.open.Inc()
	t.launch(ctx, r)
	return r
}

// finish forgets a reader that stopped.
func (t *Tailer) finish(r *reader, retire bool, fp uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.live, r)
	if t.readers[r.key] == r {
		delete(t.readers, r.key)
	}
	if t.byPath[r.path] == r {
		delete(t.byPath, r.path)
	}
	if t.byTarget[r.target] == r {
		delete(t.byTarget, r.target)
	}
	t.watchesStale = true
	if retire {
		t.retired[r.key] = retiredFile{fp: fp, at: time.Now()}
	}
	t.m.open.Dec()
}

// updateWatches watches the directories of the globs and of the open files' resolved paths
// (writes to a symlinked file are reported in its target's directory only). Called with t.mu
// held.
func (t *Tailer) updateWatches() {
	if t.watcher == nil {
		return
	}
	t.watchesStale = false
	want := make(map[string]bool)
	for _, p := range t.cfg.Paths {
		dir := filepath.Dir(p)
		if hasMeta(dir) {
			ds, _ := filepath.Glob(dir)
			for _, d := range ds {
				want[d] = true
			}
		} else {
			want[dir] = true
		}
	}
	for _, r := range t.readers {
		want[filepath.Dir(r.target)] = true
	}
	// The watch list, not a copy of our own: the kernel drops the watch of a deleted directory.
	have := make(map[string]bool)
	for _, d := range t.watcher.WatchList() {
		have[d] = true
		if !want[d] {
			_ = t.watcher.Remove(d)
		}
	}
	for d := range want {
		if have[d] {
			continue
		}
		if err := t.watcher.Add(d); err != nil {
			t.log.Debug("cannot watch directory; the scan covers it", "dir", d, "err", err)
		}
	}
}

func hasMeta(p string) bool { return strings.ContainsAny(p, `*?[\`) }

// chunkBytesFor is the chunk charge at which a reader closes a chunk: maxChunkBytes, or less
// with a Budget, so that its chunk half holds chunksInFlight chunks.
func chunkBytesFor(b *Budget) int64 {
	if b == nil {
		return maxChunkBytes
	}
	return min(maxChunkBytes, max(minChunkBytes, b.chunks.limit/chunksInFlight))
}
