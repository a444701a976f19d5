package tail

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/skiff-logs/skiff/agent/event"
)

func TestRecyclerReusesWithinClass(t *testing.T) {
	m := &recycler{limit: 1 << 20}
	b := m.block(100 << 10)
	if cap(b) < 100<<10 || len(b) != 0 {
		t.Fatalf("block: len %d cap %d", len(b), cap(b))
	}
	b = append(b, "payload"...)
	recs := m.records(300)
	recs = append(recs, event.Record{Message: b, Tag: "t", Time: time.Unix(1, 0)})
	m.free([][]byte{b}, recs)
	if m.held != int64(cap(b))+int64(cap(recs))*recordSize {
		t.Fatalf("held %d after free", m.held)
	}

	if got := m.block(80 << 10); cap(got) != cap(b) || len(got) != 0 || &got[:1][0] != &b[0] {
		t.Fatalf("a block of 80 KiB did not reuse the freed 100 KiB block (cap %d)", cap(got))
	}
	got := m.records(200)
	if cap(got) != cap(recs) || len(got) != 0 {
		t.Fatalf("records(200) did not reuse the freed slice of %d (cap %d)", cap(recs), cap(got))
	}
	if r := got[:1][0]; r.Message != nil || r.Tag != "" || !r.Time.IsZero() {
		t.Fatalf("recycled record not zeroed: %+v", r)
	}
	if m.held != 0 {
		t.Fatalf("held %d after taking everything back", m.held)
	}

	// More than twice the size asked for is not handed out: it would waste what it holds.
	m.free([][]byte{make([]byte, 0, 64<<10)}, nil)
	if got := m.block(16 << 10); cap(got) != 16<<10 {
		t.Fatalf("a 16 KiB request got a block of %d", cap(got))
	}
}

func TestRecyclerLimits(t *testing.T) {
	m := &recycler{limit: 64 << 10}
	m.free([][]byte{make([]byte, 0, 48<<10), make([]byte, 0, 32<<10), make([]byte, 0, 1<<10)}, nil)
	if m.held != 48<<10 {
		t.Fatalf("held %d, want only the first block (the second is over the limit, the third too small)", m.held)
	}
	var zero recycler
	zero.free([][]byte{make([]byte, 0, 8<<10)}, make([]event.Record, 3))
	if zero.held != 0 {
		t.Fatalf("the zero recycler kept %d bytes", zero.held)
	}
}

// The chunks a reader hands on give their memory back when acknowledged, and the next chunks
// are read into it without disturbing the chunks still in flight.
func TestChunkMemoryRecycled(t *testing.T) {
	const lines, msgLen = 20000, 200
	budget := NewBudget(1 << 20)
	s := &sink{}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "0.log"), numberedLines(lines, msgLen))
	cfg := testConfig(t, dir, newStore(t, t.TempDir()))
	cfg.Budget = budget
	start(t, cfg, s)
	waitFor(t, "every line", func() bool { return len(s.records()) == lines })
	for i, r := range s.records() {
		if want := fmt.Sprintf("%0*d", msgLen, i); r.Msg != want { // numberedLines' line i
			t.Fatalf("record %d is %q, want %q", i, r.Msg, want)
		}
	}
	budget.mem.mu.Lock()
	held := budget.mem.held
	budget.mem.mu.Unlock()
	if held == 0 {
		t.Fatal("nothing recycled after every chunk was acknowledged")
	}
}
