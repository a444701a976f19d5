package tail

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-logs/skiff/agent/event"
	"github.com/skiff-logs/skiff/agent/positions"
)

// testParser stands in for the real parsers:
//   - "P:<text>" is a fragment kept until the next "F:<text>" line, which completes the record
//     (offset of the first fragment), like CRI partial lines; Flush emits them as a truncated
//     record;
//   - a line starting with '!' is a parse error (raw line, FlagParseError);
//   - anything else is a record whose message is the line.
type testParser struct {
	first   string // the first line it was created with
	pending []byte
	pendOff int64
	held    bool
}

func newTestParser(first []byte, _ int) Parser {
	return &testParser{first: string(first)}
}

func (p *testParser) Parse(line []byte, off int64, r *event.Record) bool {
	switch {
	case bytes.HasPrefix(line, []byte("P:")):
		if !p.held {
			p.held, p.pendOff, p.pending = true, off, p.pending[:0]
		}
		p.pending = append(p.pending, line[2:]...)
		return false
	case bytes.HasPrefix(line, []byte("F:")) && p.held:
		p.pending = append(p.pending, line[2:]...)
		r.Message, r.Offset = p.pending, p.pendOff
		p.held = false
		return true
	case bytes.HasPrefix(line, []byte("!")):
		r.Message, r.Offset, r.Flags = line, off, event.FlagParseError
		return true
	}
	r.Message, r.Offset = line, off
	return true
}

func (p *testParser) PendingFrom() (int64, bool) { return p.pendOff, p.held }

// Flush emits the held "P:" fragments as a truncated record.
func (p *testParser) Flush(r *event.Record) bool {
	if !p.held {
		return false
	}
	r.Message, r.Offset, r.Flags = p.pending, p.pendOff, event.FlagTruncated
	p.held = false
	return true
}

// got is what a test keeps of a record (the record itself is not valid after delivery).
type got struct {
	Path, Msg, Tag, ID string
	Off                int64
	Flags              event.Flags
	Time               time.Time
}

// sink is a handle func that records what it gets and delivers it at once, or holds the
// batches (one per chunk) until the test finishes them.
type sink struct {
	mu      sync.Mutex
	recs    []got
	batches []*event.Batch
	hold    bool
	block   chan struct{} // when set, handle waits for it before taking the chunk
	chunks  int
	// slow, when set and true for a chunk, makes handle take 100ms over it.
	slow func(*event.Chunk) bool
}

func (s *sink) handle(ctx context.Context, c *event.Chunk) error {
	s.mu.Lock()
	block := s.block
	s.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if s.slow != nil && s.slow(c) {
		time.Sleep(100 * time.Millisecond)
	}
	b := &event.Batch{}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.chunks++
	for i := range c.Records {
		r := &c.Records[i]
		if r.Ack != c.Ack {
			panic("record without its chunk's ack")
		}
		s.recs = append(s.recs, got{
			Path: r.Source.Path, Msg: string(r.Message), Tag: r.Tag, ID: string(r.AppendID(nil)),
			Off: r.Offset, Flags: r.Flags, Time: r.Time,
		})
		b.Add(r)
	}
	if s.hold {
		s.batches = append(s.batches, b)
	} else {
		b.Done(event.Delivered)
	}
	return nil
}

// pause makes handle wait (backpressure) until resume.
func (s *sink) pause() {
	s.mu.Lock()
	s.block = make(chan struct{})
	s.mu.Unlock()
}

func (s *sink) resume() {
	s.mu.Lock()
	close(s.block)
	s.block = nil
	s.mu.Unlock()
}

func (s *sink) records() []got {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]got(nil), s.recs...)
}

func (s *sink) messages() []string {
	var out []string
	for _, r := range s.records() {
		out = append(out, r.Msg)
	}
	return out
}

func (s *sink) batch(i int) *event.Batch {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.batches[i]
}

// waitFor polls cond until it holds, failing the test after 15 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitRecords waits until the sink holds at least n records and returns them.
func waitRecords(t *testing.T, s *sink, n int) []got {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for len(s.records()) < n {
		if time.Now().After(deadline) {
			got := s.messages()
			if len(got) > 10 {
				got = got[len(got)-10:]
			}
			t.Fatalf("timed out waiting for %d records; have %d, the last %q", n, len(s.records()), got)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return s.records()
}

func newStore(t *testing.T, dir string) *positions.Store {
	t.Helper()
	s, err := positions.Open(filepath.Join(dir, positions.FileName), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testConfig tails dir/*.log with short intervals.
func testConfig(t *testing.T, dir string, store *positions.Store) Config {
	return Config{
		Input:        strings.ReplaceAll(t.Name(), "/", "_"),
		Paths:        []string{filepath.Join(dir, "*.log")},
		ScanInterval: 20 * time.Millisecond,
		DrainGrace:   100 * time.Millisecond,
		NewParser:    newTestParser,
		Positions:    store,
		Logger:       slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// testWriter sends the tailer's logs to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// fixture writes content to <a new directory>/name and returns its path, a new positions
// store, and the config tailing the directory with that store.
func fixture(t *testing.T, name, content string) (path string, store *positions.Store, cfg Config) {
	t.Helper()
	dir := t.TempDir()
	path = filepath.Join(dir, name)
	writeFile(t, path, content)
	store = newStore(t, t.TempDir())
	return path, store, testConfig(t, dir, store)
}

// start runs a tailer until the returned stop func (also registered as cleanup) is called.
func start(t *testing.T, cfg Config, s *sink) (stop func()) {
	t.Helper()
	tl, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tl.Run(ctx, s.handle) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mkdirs(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func appendFile(t *testing.T, path, content string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
}

func fileKey(t *testing.T, path string) positions.Key {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	k, ok := keyOf(fi)
	if !ok {
		t.Fatal("no file identity")
	}
	return k
}

func offsetOf(s *positions.Store, k positions.Key) int64 {
	e, _ := s.Get(k)
	return e.Offset
}

func lines(prefix string, from, to int) string {
	var b strings.Builder
	for i := from; i < to; i++ {
		fmt.Fprintf(&b, "%s%d\n", prefix, i)
	}
	return b.String()
}

// numberedLines returns n lines, line i being i zero-padded to width digits.
func numberedLines(n, width int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "%0*d\n", width, i)
	}
	return b.String()
}

func seq(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s%d", prefix, i))
	}
	return out
}
