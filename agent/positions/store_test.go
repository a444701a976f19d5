package positions

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-logs/skiff/agent/metrics"
)

func TestStoreRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), FileName)
	s, err := Open(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []Entry{
		{Key: Key{Dev: 1, Ino: 2}, Fingerprint: 0xdeadbeefcafef00d, Generation: 3, Path: "/b.log", Offset: 99},
		{Key: Key{Dev: 1<<63 + 5, Ino: 1<<64 - 1}, Fingerprint: 1, Path: "/a.log", Target: "/pods/a/0.log", Offset: 1 << 40,
			Size: 1<<40 + 7, Origin: Key{Dev: 9, Ino: 10}},
	}
	for _, e := range want {
		s.Put(e)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := s2.Entries()
	if len(got) != 2 {
		t.Fatalf("got %d entries, want 2", len(got))
	}
	// Entries sorts by path.
	for i, w := range []Entry{want[1], want[0]} {
		g := got[i]
		if g.Key != w.Key || g.Fingerprint != w.Fingerprint || g.Generation != w.Generation ||
			g.Path != w.Path || g.Target != w.Target || g.Offset != w.Offset || g.Updated.IsZero() ||
			g.Size != w.Size || g.Origin != w.Origin {
			t.Errorf("entry %d = %+v, want %+v", i, g, w)
		}
	}
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if doc["version"] != float64(1) {
		t.Errorf("version = %v", doc["version"])
	}
	if !strings.Contains(string(raw), `"fp": "deadbeefcafef00d"`) {
		t.Errorf("fingerprint not written as 16 hex digits:\n%s", raw)
	}
}

func TestStoreUnreadableFileMovedAside(t *testing.T) {
	for _, tc := range []struct {
		name, content string
	}{
		{"garbage", "\x00\x01not json"},
		{"truncated", `{"version":1,"files":[{"dev":1,`},
		{"empty", ""},
		{"unsupported version", `{"version":2,"files":[]}`},
		{"bad fingerprint", `{"version":1,"files":[{"dev":1,"ino":2,"fp":"xyz","path":"/a","offset":1}]}`},
		{"negative offset", `{"version":1,"files":[{"dev":1,"ino":2,"fp":"01","path":"/a","offset":-1}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, FileName)
			if err := os.WriteFile(p, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			clock := time.Unix(1700000000, 0)
			s, err := Open(p, nil, withClock(func() time.Time { return clock }))
			if err != nil {
				t.Fatal(err)
			}
			if n := len(s.Entries()); n != 0 {
				t.Errorf("store has %d entries, want none", n)
			}
			aside := p + ".corrupt-1700000000"
			if s.MovedAside() != aside {
				t.Errorf("MovedAside = %q, want %q", s.MovedAside(), aside)
			}
			got, err := os.ReadFile(aside)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.content {
				t.Errorf("moved file content changed")
			}
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Errorf("positions file still in place: %v", err)
			}
		})
	}
}

func TestStoreOpenRemovesTempFiles(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, FileName)
	tmp := filepath.Join(dir, FileName+".tmp-123")
	if err := os.WriteFile(tmp, []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(p, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Errorf("temp file left behind: %v", err)
	}
}

func TestStoreWritesOnlyWhenChanged(t *testing.T) {
	p := filepath.Join(t.TempDir(), FileName)
	s, err := Open(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	ok := metrics.Value(metricsWritesOK())
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatalf("clean store wrote a file: %v", err)
	}
	k := Key{Dev: 1, Ino: 1}
	s.Put(Entry{Key: k, Fingerprint: 7, Path: "/x", Offset: 0})
	for range 3 {
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if got := metrics.Value(metricsWritesOK()) - ok; got != 1 {
		t.Errorf("writes after one change = %v, want 1", got)
	}
	if s.Commit(k, 7, 0, 0) {
		t.Error("commit of the same offset reported a change")
	}
	if s.Commit(k, 8, 0, 10) {
		t.Error("commit with another fingerprint changed the entry")
	}
	if s.Commit(k, 7, 1, 10) {
		t.Error("commit with another generation changed the entry")
	}
	if !s.Commit(k, 7, 0, 10) {
		t.Error("commit did not change the entry")
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := metrics.Value(metricsWritesOK()) - ok; got != 2 {
		t.Errorf("writes after two changes = %v, want 2", got)
	}
}

func TestStoreRetention(t *testing.T) {
	p := filepath.Join(t.TempDir(), FileName)
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	s, err := Open(p, nil, WithRetention(time.Hour), withClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	held := Entry{Key: Key{Ino: 1}, Path: "/held"}
	gone := Entry{Key: Key{Ino: 2}, Path: "/gone"}
	closed := Entry{Key: Key{Ino: 3}, Path: "/closed"}
	s.Put(gone)
	ht := NewTracker(s, held)
	ct := NewTracker(s, closed)
	advance(30 * time.Minute)
	ct.Close()
	advance(31 * time.Minute)
	if n := s.Expire(); n != 1 {
		t.Errorf("expired %d entries, want 1 (the one never held)", n)
	}
	if _, ok := s.Get(gone.Key); ok {
		t.Error("entry not held for longer than the retention survived")
	}
	if _, ok := s.Get(closed.Key); !ok {
		t.Error("entry closed 31 minutes ago expired with a 1h retention")
	}
	advance(30 * time.Minute)
	s.Expire()
	if _, ok := s.Get(closed.Key); ok {
		t.Error("entry closed 61 minutes ago survived a 1h retention")
	}
	if _, ok := s.Get(held.Key); !ok {
		t.Error("entry of an open tracker expired")
	}
	ht.Close()
}

func TestStoreRunFlushesOnTickAndShutdown(t *testing.T) {
	p := filepath.Join(t.TempDir(), FileName)
	s, err := Open(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx, 10*time.Millisecond) }()
	k := Key{Ino: 42}
	s.Put(Entry{Key: k, Fingerprint: 1, Path: "/a", Offset: 5})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if s2, err := Open(p, nil); err == nil {
			if e, ok := s2.Get(k); ok && e.Offset == 5 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("Run did not write the change")
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.Commit(k, 1, 0, 9)
	cancel()
	<-done
	s2, err := Open(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if e, _ := s2.Get(k); e.Offset != 9 {
		t.Errorf("offset after shutdown = %d, want 9", e.Offset)
	}
}

func TestStoreOpenFailsOnIOError(t *testing.T) {
	if os.Geteuid() == 0 {
		// root reads files whatever their mode; use a directory in place of the file instead.
		p := filepath.Join(t.TempDir(), FileName)
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(p, nil); err == nil {
			t.Fatal("Open of a directory succeeded")
		}
		return
	}
	p := filepath.Join(t.TempDir(), FileName)
	if err := os.WriteFile(p, []byte(`{"version":1,"files":[]}`), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(p, nil); err == nil {
		t.Fatal("Open of an unreadable file succeeded")
	}
}

// TestLoadsFileWithoutNewFields: a positions file written before size and orig_dev/orig_ino
// existed loads, with those fields zero.
func TestLoadsFileWithoutNewFields(t *testing.T) {
	p := filepath.Join(t.TempDir(), FileName)
	old := `{"version":1,"files":[{"dev":1,"ino":2,"fp":"00000000000000ff","gen":0,"path":"/a.log","offset":5,"updated":"2024-01-02T03:04:05Z"}]}`
	if err := os.WriteFile(p, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Open(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.MovedAside() != "" {
		t.Fatal("an older positions file was moved aside")
	}
	e, ok := s.Get(Key{Dev: 1, Ino: 2})
	if !ok || e.Offset != 5 || e.Fingerprint != 0xff || e.Size != 0 || e.Origin != (Key{}) {
		t.Fatalf("entry %+v (found %v)", e, ok)
	}
}

func TestLookupSetSizeRemove(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), FileName), nil)
	if err != nil {
		t.Fatal(err)
	}
	plain := Entry{Key: Key{Dev: 1, Ino: 2}, Fingerprint: 7, Path: "/c/x.log", Target: "/pods/x/0.log", Offset: 10, Size: 20}
	other := Entry{Key: Key{Dev: 1, Ino: 3}, Fingerprint: 7, Path: "/pods/y/0.log", Offset: 1}
	s.Put(plain)
	s.Put(other)
	for _, tc := range []struct {
		target string
		fp     uint64
		except Key
		want   Key
		found  bool
	}{
		{"/pods/x/0.log", 7, Key{}, plain.Key, true},
		{"/pods/y/0.log", 7, Key{}, other.Key, true}, // no Target: Path is the resolved path
		{"/pods/x/0.log", 8, Key{}, Key{}, false},
		{"/pods/x/0.log", 7, plain.Key, Key{}, false},
		{"/c/x.log", 7, Key{}, Key{}, false},
	} {
		e, ok := s.Lookup(tc.target, tc.fp, tc.except)
		if ok != tc.found || e.Key != tc.want {
			t.Errorf("Lookup(%q, %d, %v) = %v %v, want %v %v", tc.target, tc.fp, tc.except, e.Key, ok, tc.want, tc.found)
		}
	}

	s.SetSize(plain.Key, 8, 0, 99) // another fingerprint: ignored
	s.SetSize(plain.Key, 7, 0, 30)
	if e, _ := s.Get(plain.Key); e.Size != 30 {
		t.Errorf("size %d, want 30", e.Size)
	}

	tr := NewTracker(s, plain)
	if s.Remove(plain.Key, 7) {
		t.Error("removed an entry a tracker holds")
	}
	tr.Close()
	if s.Remove(plain.Key, 8) {
		t.Error("removed an entry with another fingerprint")
	}
	if !s.Remove(plain.Key, 7) {
		t.Error("did not remove the entry")
	}
	if _, ok := s.Get(plain.Key); ok {
		t.Error("entry still there")
	}
}
