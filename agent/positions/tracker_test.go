package positions

import (
	"math/rand"
	"path/filepath"
	"sync"
	"testing"

	"github.com/skiff-logs/skiff/agent/event"
	"github.com/skiff-logs/skiff/agent/metrics"
)

func metricsWritesOK() *metrics.Counter { return metrics.PositionsWrites.WithLabelValues("ok") }

func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), FileName), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestTrackerCommitsOrderedPrefix(t *testing.T) {
	type step struct {
		release int          // index of the ack to finish
		status  event.Status // how
		want    int64        // committed offset afterwards
	}
	ends := []int64{10, 20, 30, 40}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"in order", []step{{0, event.Delivered, 10}, {1, event.Delivered, 20}, {2, event.Delivered, 30}, {3, event.Delivered, 40}}},
		{"out of order waits for the first", []step{{2, event.Delivered, 0}, {1, event.Spooled, 0}, {0, event.Delivered, 30}, {3, event.Dropped, 40}}},
		{"rejected counts as done", []step{{0, event.Rejected, 10}, {1, event.Delivered, 20}}},
		{"failed blocks progress past it", []step{{0, event.Delivered, 10}, {1, event.Failed, 10}, {2, event.Delivered, 10}, {3, event.Delivered, 10}}},
		{"failed first blocks everything", []step{{1, event.Delivered, 0}, {0, event.Failed, 0}, {2, event.Delivered, 0}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			k := Key{Dev: 1, Ino: 2}
			tr := NewTracker(s, Entry{Key: k, Fingerprint: 5, Path: "/t/" + tc.name, Offset: 0})
			defer tr.Close()
			acks := make([]*event.Ack, len(ends))
			for i, e := range ends {
				acks[i] = tr.NewAck(e)
				// Each chunk goes to one batch, like a route to one output.
				acks[i].Retain(1)
				acks[i].Release(1, event.Delivered) // the reader's seal
			}
			for _, st := range tc.steps {
				acks[st.release].Release(1, st.status)
				if got := tr.Committed(); got != st.want {
					t.Fatalf("after finishing ack %d (%s): committed %d, want %d", st.release, st.status, got, st.want)
				}
				e, _ := s.Get(k)
				if e.Offset != st.want {
					t.Fatalf("store offset %d, want %d", e.Offset, st.want)
				}
			}
		})
	}
}

func TestTrackerUnackedGauge(t *testing.T) {
	s := newStore(t)
	path := "/gauge/test.log"
	g := metrics.FileUnackedBytes.WithLabelValues(path)
	a := NewTracker(s, Entry{Key: Key{Ino: 1}, Path: path, Offset: 100})
	b := NewTracker(s, Entry{Key: Key{Ino: 2}, Path: path, Offset: 0}) // a rotated file's successor
	a1 := a.NewAck(150)
	b1 := b.NewAck(30)
	if got := metrics.Value(g); got != 80 {
		t.Fatalf("unacked = %v, want 80", got)
	}
	a1.Release(1, event.Delivered)
	if got := metrics.Value(g); got != 30 {
		t.Fatalf("unacked = %v, want 30", got)
	}
	a.Close()
	a.Close()
	if got := metrics.Value(g); got != 30 {
		t.Fatalf("unacked after closing the other tracker = %v, want 30", got)
	}
	b.Close()
	b1.Release(1, event.Delivered)
	if got := testLabelCount(t, path); got != 0 {
		t.Errorf("label still present after the last tracker of the path closed")
	}
	if e, _ := s.Get(Key{Ino: 2}); e.Offset != 30 {
		t.Errorf("ack after Close not committed: offset %d", e.Offset)
	}
}

func testLabelCount(t *testing.T, path string) int {
	t.Helper()
	if metrics.FileUnackedBytes.Has(path) {
		return 1
	}
	return 0
}

func TestTrackerStaleGenerationDoesNotCommit(t *testing.T) {
	s := newStore(t)
	k := Key{Ino: 9}
	old := NewTracker(s, Entry{Key: k, Fingerprint: 1, Generation: 0, Path: "/x", Offset: 0})
	a := old.NewAck(500)
	old.Close()
	cur := NewTracker(s, Entry{Key: k, Fingerprint: 1, Generation: 1, Path: "/x", Offset: 0})
	defer cur.Close()
	a.Release(1, event.Delivered)
	if e, _ := s.Get(k); e.Offset != 0 || e.Generation != 1 {
		t.Errorf("entry = %+v: a late ack of the truncated generation moved the new one", e)
	}
}

// TestTrackerConcurrentAcks finishes acks from many goroutines in random order (run with -race):
// the committed offset must only grow, never pass an unfinished ack, and end at the last End.
func TestTrackerConcurrentAcks(t *testing.T) {
	s := newStore(t)
	k := Key{Ino: 77}
	tr := NewTracker(s, Entry{Key: k, Path: "/concurrent", Offset: 0})
	defer tr.Close()
	const n = 2000
	acks := make([]*event.Ack, n)
	for i := range acks {
		acks[i] = tr.NewAck(int64(i+1) * 10)
		acks[i].Retain(2) // two outputs
		acks[i].Release(1, event.Delivered)
	}
	order := rand.Perm(2 * n)
	var wg sync.WaitGroup
	work := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range work {
				acks[j%n].Release(1, event.Delivered)
			}
		}()
	}
	var last int64
	for i, j := range order {
		work <- j
		if i%97 == 0 {
			c := tr.Committed()
			if c < last {
				t.Fatalf("committed went back from %d to %d", last, c)
			}
			last = c
		}
	}
	close(work)
	wg.Wait()
	if got := tr.Committed(); got != n*10 {
		t.Errorf("committed %d, want %d", got, n*10)
	}
}
