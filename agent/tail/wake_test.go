package tail

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

// TestTakeEvents: at the end of a pause every waiting event is taken, not only those ready at
// once: each named reader is woken (once, however many events name it), a creation asks for a
// scan, and an empty queue ends the pauses.
func TestTakeEvents(t *testing.T) {
	tl := &Tailer{byTarget: make(map[string]*reader), scanReq: make(chan struct{}, 1)}
	tl.turns.ready = make(chan struct{}, 4)
	newR := func() *reader { return &reader{t: tl} }
	// woken reports whether r was queued for a turn, and makes it idle again.
	woken := func(r *reader) bool { return r.turn.CompareAndSwap(turnQueued, turnIdle) }
	readers := []*reader{newR(), newR(), newR()}
	for i, r := range readers {
		tl.byTarget[fmt.Sprintf("/logs/%d.log", i)] = r
	}
	tests := []struct {
		name   string
		events []fsnotify.Event
		more   bool
		woken  []bool
		scan   bool
	}{
		{"none", nil, false, []bool{false, false, false}, false},
		{"a backlog of writes, in turn", func() []fsnotify.Event {
			var evs []fsnotify.Event
			for i := range 3 * eventBuffer / 4 {
				evs = append(evs, fsnotify.Event{Name: fmt.Sprintf("/logs/%d.log", i%2), Op: fsnotify.Write})
			}
			return evs
		}(), true, []bool{true, true, false}, false},
		{"unknown file and a creation", []fsnotify.Event{
			{Name: "/logs/other.log", Op: fsnotify.Write},
			{Name: "/logs/2.log", Op: fsnotify.Create},
		}, true, []bool{false, false, true}, true},
	}
	for _, tt := range tests {
		ch := make(chan fsnotify.Event, eventBuffer)
		for _, ev := range tt.events {
			ch <- ev
		}
		if more := tl.takeEvents(ch); more != tt.more {
			t.Errorf("%s: takeEvents = %v, want %v", tt.name, more, tt.more)
		}
		if len(ch) != 0 {
			t.Errorf("%s: %d events left waiting", tt.name, len(ch))
		}
		var queued []*reader
		for _, r := range tl.turns.q {
			queued = append(queued, r)
		}
		tl.turns.q = nil
		for i, r := range readers {
			got := woken(r)
			if got != tt.woken[i] {
				t.Errorf("%s: reader %d woken = %v, want %v", tt.name, i, got, tt.woken[i])
			}
			if n := countOf(queued, r); got && n != 1 {
				t.Errorf("%s: reader %d queued %d times, want once", tt.name, i, n)
			}
		}
		scan := len(tl.scanReq) > 0
		if scan {
			<-tl.scanReq
		}
		if scan != tt.scan {
			t.Errorf("%s: scan requested = %v, want %v", tt.name, scan, tt.scan)
		}
	}
}

func countOf(rs []*reader, r *reader) (n int) {
	for _, x := range rs {
		if x == r {
			n++
		}
	}
	return n
}

// TestQuietFileAmongBusyOnes: with the scan out of the way, a line written to a quiet file just
// after bursts of single-line writes to 99 others is read through its fsnotify event, within
// a bound far below what taking events one per pause used to cost (the events of 10,000 writes
// queued ahead of it were taken at about 50 a second, so the scan was the real wake-up), and so
// is every file's last line.
func TestQuietFileAmongBusyOnes(t *testing.T) {
	const busy, rounds = 99, 100
	dir := t.TempDir()
	store := newStore(t, t.TempDir())
	cfg := testConfig(t, dir, store)
	cfg.ScanInterval = time.Hour // only fsnotify can wake the readers
	paths := make([]string, busy+1)
	for i := range paths {
		paths[i] = filepath.Join(dir, fmt.Sprintf("f%03d.log", i))
		writeFile(t, paths[i], fmt.Sprintf("start-%d\n", i))
	}
	s := &sink{}
	start(t, cfg, s)
	waitRecords(t, s, len(paths))

	files := make([]*os.File, len(paths))
	for i, p := range paths {
		f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		files[i] = f
	}
	for r := range rounds {
		for i := range busy {
			if _, err := fmt.Fprintf(files[i], "busy-%d-%d\n", i, r); err != nil {
				t.Fatal(err)
			}
		}
	}
	written := time.Now()
	if _, err := files[busy].WriteString("quiet-line\n"); err != nil {
		t.Fatal(err)
	}

	const bound = 5 * time.Second // several times the old scan interval; events take milliseconds
	deadline := written.Add(bound)
	want := len(paths) + busy*rounds + 1
	for {
		recs := s.records()
		if len(recs) >= want {
			break
		}
		if time.Now().After(deadline) {
			quiet := slices.ContainsFunc(recs, func(g got) bool { return g.Msg == "quiet-line" })
			t.Fatalf("%v after the writes: %d of %d records read; the quiet file's line read: %v",
				bound, len(recs), want, quiet)
		}
		time.Sleep(5 * time.Millisecond)
	}
	last := make(map[string]string)
	for _, g := range s.records() {
		last[g.Path] = g.Msg
	}
	for i, p := range paths[:busy] {
		if want := fmt.Sprintf("busy-%d-%d", i, rounds-1); last[p] != want {
			t.Errorf("%s: last record %q, want %q", p, last[p], want)
		}
	}
	if !strings.HasPrefix(last[paths[busy]], "quiet-line") {
		t.Errorf("quiet file: last record %q", last[paths[busy]])
	}
}
