// Package positions remembers how far skiff has delivered each file it tails, so that a restart
// resumes exactly there: nothing lost, nothing read twice beyond what was in flight.
//
// The Store is the crash-safe positions file; a Tracker per open file generation turns the
// acknowledgements of delivered chunks, which may complete in any order, into an offset that only
// ever covers records every output finished with.
package positions

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/skiff-logs/skiff/agent/metrics"
)

// FileName is the positions file's name inside the agent's data_dir.
const FileName = "positions.json"

// Version is the only positions-file format version this package reads and writes. Fields
// added since (size, orig_dev/orig_ino) are optional: a file written before them loads with
// their zero values, and an older skiff reading a newer file ignores them.
const Version = 1

// DefaultRetention is how long an entry is kept after its file was last open.
const DefaultRetention = 24 * time.Hour

// DefaultInterval is how often Run writes the file when something changed.
const DefaultInterval = time.Second

// Key is a file's identity on the node: device and inode. An inode can be reused after a file
// is deleted; Entry.Fingerprint tells the two files apart.
type Key struct {
	Dev, Ino uint64
}

// Entry is what the store remembers about one file.
type Entry struct {
	Key
	// Fingerprint is the FNV-64a hash of the file's first line (at most its first 256 bytes).
	Fingerprint uint64
	// Generation counts the truncations (copytruncate) detected on this file.
	Generation uint32
	// Path is the path the file was discovered under (for a kubelet symlink, the symlink).
	Path string
	// Target is the resolved path of Path when it differs (the real file behind a symlink); it
	// is where rotated siblings are looked for after a restart.
	Target string
	// Offset is the byte offset up to which every record was delivered. For a gzip-compressed
	// file it is an offset in the decompressed content.
	Offset int64
	// Size is the file's size (decompressed, for a gzip-compressed file) when the reader last
	// looked; 0 when unknown (entries written before the field existed). Offset < Size means
	// the file was not read to its end: what is left is lost if the file disappears.
	Size int64
	// Origin, when not zero, is the identity document ids derive from instead of Key: a
	// gzip-compressed rotated file is keyed by its own inode but keeps the identity of the
	// uncompressed file it was made from, so that its records get the same ids.
	Origin Key
	// Updated is when Offset last changed.
	Updated time.Time
}

// Option configures a Store.
type Option func(*Store)

// WithRetention sets how long an entry is kept after its file was last open (DefaultRetention
// when d <= 0).
func WithRetention(d time.Duration) Option {
	return func(s *Store) {
		if d > 0 {
			s.retention = d
		}
	}
}

// withClock replaces time.Now (tests).
func withClock(now func() time.Time) Option {
	return func(s *Store) { s.now = now }
}

// Store is the positions file and its in-memory state. It is safe for concurrent use.
//
// Changes are kept in memory and written by Run on a ticker (only when something changed) and by
// Flush. A write is a temporary file, fsynced, renamed over the positions file, and the
// directory fsynced: after a crash the file is either the old or the new state, never a mix.
type Store struct {
	path      string
	log       *slog.Logger
	retention time.Duration
	now       func() time.Time

	mu      sync.Mutex
	entries map[Key]*item
	version uint64 // bumped on every change
	written uint64 // version last written to disk
	aside   string

	wmu sync.Mutex // serialises writes, so an older snapshot never replaces a newer one
	wf  *metrics.WriteFailures
}

type item struct {
	Entry
	holds int       // open trackers pinning the entry
	seen  time.Time // when the entry was last pinned (or loaded)
}

// Open loads the positions file at path (normally <data_dir>/positions.json). A missing file
// yields an empty store. A file that is not valid JSON, or has an unsupported version, is moved
// aside to <path>.corrupt-<unix seconds> with a loud warning and the store starts empty, so the
// caller applies its start_at policy; MovedAside reports it. Only I/O errors (e.g. permission
// denied) fail Open. Leftover temporary files from an interrupted write are removed.
func Open(path string, log *slog.Logger, opts ...Option) (*Store, error) {
	if log == nil {
		log = slog.Default()
	}
	s := &Store{
		path:      path,
		log:       log,
		retention: DefaultRetention,
		now:       time.Now,
		entries:   make(map[Key]*item),
	}
	s.wf = metrics.NewWriteFailures("positions", log)
	for _, o := range opts {
		o(s)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("open positions %s: %w", path, err)
	}
	s.removeTemps()
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open positions %s: %w", path, err)
	}
	entries, err := decode(data)
	if err != nil {
		if err := s.moveAside(err); err != nil {
			return nil, err
		}
		return s, nil
	}
	now := s.now()
	for _, e := range entries {
		s.entries[e.Key] = &item{Entry: e, seen: now}
	}
	return s, nil
}

// Path returns the positions file's path.
func (s *Store) Path() string { return s.path }

// MovedAside returns where Open moved an unreadable positions file, or "" if it did not.
func (s *Store) MovedAside() string { return s.aside }

func (s *Store) moveAside(cause error) error {
	aside := s.path + ".corrupt-" + strconv.FormatInt(s.now().Unix(), 10)
	if err := os.Rename(s.path, aside); err != nil {
		return fmt.Errorf("move unreadable positions %s aside: %w (it is unreadable: %v)", s.path, err, cause)
	}
	s.aside = aside
	s.log.Error("positions file is unreadable: moved it aside and starting with no positions; "+
		"files will be read according to start_at, which may re-send or skip records",
		"path", s.path, "moved_to", aside, "err", cause)
	return nil
}

func (s *Store) removeTemps() {
	dir, base := filepath.Split(s.path)
	names, err := os.ReadDir(filepath.Clean(dir))
	if err != nil {
		return
	}
	for _, n := range names {
		if strings.HasPrefix(n.Name(), base+".tmp-") {
			_ = os.Remove(filepath.Join(dir, n.Name()))
		}
	}
}

// Get returns the entry for k.
func (s *Store) Get(k Key) (Entry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.entries[k]
	if !ok {
		return Entry{}, false
	}
	return it.Entry, true
}

// Entries returns a copy of every entry, sorted by path, then device and inode.
func (s *Store) Entries() []Entry {
	s.mu.Lock()
	out := make([]Entry, 0, len(s.entries))
	for _, it := range s.entries {
		out = append(out, it.Entry)
	}
	s.mu.Unlock()
	sortEntries(out)
	return out
}

// Put records e, replacing any entry with the same key. Updated is set to now.
func (s *Store) Put(e Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e.Updated = s.now()
	if it, ok := s.entries[e.Key]; ok {
		it.Entry = e
	} else {
		s.entries[e.Key] = &item{Entry: e, seen: e.Updated}
	}
	s.version++
}

// Commit sets the offset of the entry for k, but only if it still describes the same file
// generation (fingerprint and generation match): a late acknowledgement from before a truncation
// or inode reuse must not move the new file's position. It reports whether it changed anything.
func (s *Store) Commit(k Key, fp uint64, gen uint32, offset int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.entries[k]
	if !ok || it.Fingerprint != fp || it.Generation != gen || it.Offset == offset {
		return false
	}
	it.Offset = offset
	it.Updated = s.now()
	s.version++
	return true
}

// SetSize records the size of the file generation described by k, fp and gen (see Entry.Size);
// like Commit, it changes nothing when the entry describes another generation.
func (s *Store) SetSize(k Key, fp uint64, gen uint32, size int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.entries[k]
	if !ok || it.Fingerprint != fp || it.Generation != gen || it.Size == size {
		return
	}
	it.Size = size
	s.version++
}

// Lookup returns an entry whose file had the resolved path target (Entry.Target, or Path when
// Target is empty) and the fingerprint fp, other than the entry for except: the file a
// rotated, compressed copy was made from. Among several, the one updated last wins.
func (s *Store) Lookup(target string, fp uint64, except Key) (Entry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var best *item
	for k, it := range s.entries {
		if k == except || it.Fingerprint != fp {
			continue
		}
		t := it.Target
		if t == "" {
			t = it.Path
		}
		if t != target {
			continue
		}
		if best == nil || it.Updated.After(best.Updated) {
			best = it
		}
	}
	if best == nil {
		return Entry{}, false
	}
	return best.Entry, true
}

// Remove drops the entry for k if it still has the fingerprint fp and no tracker holds it (a
// file that is gone for good, once its loss was counted). It reports whether it did.
func (s *Store) Remove(k Key, fp uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.entries[k]
	if !ok || it.Fingerprint != fp || it.holds > 0 {
		return false
	}
	delete(s.entries, k)
	s.version++
	return true
}

// hold pins the entry for k against expiry until the returned func is called.
func (s *Store) hold(k Key) (release func()) {
	s.mu.Lock()
	if it, ok := s.entries[k]; ok {
		it.holds++
		it.seen = s.now()
	}
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if it, ok := s.entries[k]; ok && it.holds > 0 {
				it.holds--
				it.seen = s.now()
			}
		})
	}
}

// Expire drops the entries no tracker holds whose file was last open (or, for entries loaded
// from disk and never opened since, the store was opened) longer than the retention ago. Run
// calls it on every tick. It returns the number of entries dropped.
func (s *Store) Expire() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	n := 0
	for k, it := range s.entries {
		if it.holds == 0 && now.Sub(it.seen) > s.retention {
			delete(s.entries, k)
			n++
		}
	}
	if n > 0 {
		s.version++
	}
	return n
}

// Run writes the positions file every interval (DefaultInterval when <= 0) if something changed,
// expires old entries, and writes a last time when ctx ends. Write errors (a full data_dir) are
// counted (metrics.PositionsWrites{result="error"}, metrics.DataDirWriteErrors), logged once per
// episode by Flush, and retried on the next tick; the file on disk keeps the last state written.
// The agent still calls Flush after the outputs have drained, so acknowledgements that arrive
// after Run returned are saved too.
func (s *Store) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			_ = s.Flush() // logged by Flush
			return
		case <-t.C:
			if n := s.Expire(); n > 0 {
				s.log.Info("forgot positions of files gone longer than the retention", "entries", n, "retention", s.retention)
			}
			_ = s.Flush() // logged by Flush, once per episode of failures
		}
	}
}

// Flush writes the positions file now if anything changed since the last successful write.
// When the write fails (e.g. ENOSPC), the previous positions file is left as it was, the
// temporary file is removed, the failure is counted and logged (once per episode of failures,
// see metrics.WriteFailures), and the next Flush tries again with the then current state.
func (s *Store) Flush() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	if s.version == s.written {
		s.mu.Unlock()
		return nil
	}
	v := s.version
	snap := make([]Entry, 0, len(s.entries))
	for _, it := range s.entries {
		snap = append(snap, it.Entry)
	}
	s.mu.Unlock()

	sortEntries(snap)
	if err := s.write(encode(snap)); err != nil {
		metrics.PositionsWrites.WithLabelValues("error").Inc()
		s.wf.Fail("cannot write the positions file; the previous one stays, positions are written again on the next tick", s.path, err)
		return err
	}
	metrics.PositionsWrites.WithLabelValues("ok").Inc()
	s.wf.OK(s.path)
	s.mu.Lock()
	s.written = v
	s.mu.Unlock()
	return nil
}

func (s *Store) write(data []byte) error {
	dir := filepath.Dir(s.path)
	f, err := os.CreateTemp(dir, filepath.Base(s.path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write positions %s: %w", s.path, err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		_ = f.Close()
		_ = os.Remove(tmp)
		return fmt.Errorf("write positions %s: %w", s.path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write positions %s: %w", s.path, err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write positions %s: %w", s.path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("write positions %s: sync directory: %w", s.path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("write positions %s: sync directory: %w", s.path, err)
	}
	return nil
}

func sortEntries(es []Entry) {
	sort.Slice(es, func(i, j int) bool {
		a, b := es[i], es[j]
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		if a.Dev != b.Dev {
			return a.Dev < b.Dev
		}
		return a.Ino < b.Ino
	})
}

// fileJSON is the on-disk form of the positions file.
type fileJSON struct {
	Version int         `json:"version"`
	Files   []entryJSON `json:"files"`
}

type entryJSON struct {
	Dev     uint64 `json:"dev"`
	Ino     uint64 `json:"ino"`
	FP      string `json:"fp"`
	Gen     uint32 `json:"gen"`
	Path    string `json:"path"`
	Target  string `json:"target,omitempty"`
	Offset  int64  `json:"offset"`
	Size    int64  `json:"size,omitempty"`
	OrigDev uint64 `json:"orig_dev,omitempty"`
	OrigIno uint64 `json:"orig_ino,omitempty"`
	Updated string `json:"updated"`
}

func encode(es []Entry) []byte {
	f := fileJSON{Version: Version, Files: make([]entryJSON, len(es))}
	for i, e := range es {
		f.Files[i] = entryJSON{
			Dev: e.Dev, Ino: e.Ino,
			FP:      fmt.Sprintf("%016x", e.Fingerprint),
			Gen:     e.Generation,
			Path:    e.Path,
			Target:  e.Target,
			Offset:  e.Offset,
			Size:    e.Size,
			OrigDev: e.Origin.Dev,
			OrigIno: e.Origin.Ino,
			Updated: e.Updated.UTC().Format(time.RFC3339),
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", " ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(f); err != nil {
		// Only unsupported types make Encode fail, and fileJSON has none.
		panic(fmt.Sprintf("positions: encode: %v", err))
	}
	return buf.Bytes()
}

// errFormat wraps the reasons a positions file is unreadable.
var errFormat = errors.New("positions: unreadable positions file")

func decode(data []byte) ([]Entry, error) {
	var f fileJSON
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%w: %w", errFormat, err)
	}
	if f.Version != Version {
		return nil, fmt.Errorf("%w: unsupported version %d (this skiff reads version %d)", errFormat, f.Version, Version)
	}
	out := make([]Entry, 0, len(f.Files))
	for i, fe := range f.Files {
		fp, err := strconv.ParseUint(fe.FP, 16, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: files[%d].fp: %w", errFormat, i, err)
		}
		if fe.Offset < 0 {
			return nil, fmt.Errorf("%w: files[%d].offset: negative", errFormat, i)
		}
		if fe.Size < 0 {
			return nil, fmt.Errorf("%w: files[%d].size: negative", errFormat, i)
		}
		var upd time.Time
		if fe.Updated != "" {
			if upd, err = time.Parse(time.RFC3339, fe.Updated); err != nil {
				return nil, fmt.Errorf("%w: files[%d].updated: %w", errFormat, i, err)
			}
		}
		out = append(out, Entry{
			Key:         Key{Dev: fe.Dev, Ino: fe.Ino},
			Fingerprint: fp,
			Generation:  fe.Gen,
			Path:        fe.Path,
			Target:      fe.Target,
			Offset:      fe.Offset,
			Size:        fe.Size,
			Origin:      Key{Dev: fe.OrigDev, Ino: fe.OrigIno},
			Updated:     upd,
		})
	}
	return out, nil
}
