package tail

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-logs/skiff/agent/event"
)

func TestBudgetAcquireRelease(t *testing.T) {
	tests := []struct {
		name   string
		limit  int64
		hold   int64 // acquired first
		ask    int64
		want   int64 // taken by the second Acquire; -1: it blocks until ctx ends
		remain int64 // Used after releasing the first
	}{
		{"fits", 100, 40, 60, 60, 60},
		{"does not fit", 100, 41, 60, -1, 0},
		{"bigger than the budget, alone", 100, 0, 500, 100, 100},
		{"bigger than the budget, waits for the others", 100, 1, 500, -1, 0},
		{"nothing", 100, 100, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &NewBudget(2 * tt.limit).chunks
			first, err := b.acquire(context.Background(), tt.hold)
			if err != nil || first != tt.hold {
				t.Fatalf("first Acquire = %d, %v", first, err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			n, err := b.acquire(ctx, tt.ask)
			if tt.want < 0 {
				if !errors.Is(err, context.DeadlineExceeded) || n != 0 {
					t.Fatalf("Acquire = %d, %v; want it to block until the deadline", n, err)
				}
			} else if err != nil || n != tt.want {
				t.Fatalf("Acquire = %d, %v; want %d", n, err, tt.want)
			}
			b.release(first)
			if got := b.used(); got != tt.remain {
				t.Errorf("Used = %d, want %d", got, tt.remain)
			}
		})
	}
}

func TestBudgetWakesWaiter(t *testing.T) {
	b := &NewBudget(20).readers
	n, _ := b.acquire(context.Background(), 10)
	got := make(chan int64)
	go func() {
		m, err := b.acquire(context.Background(), 5)
		if err != nil {
			m = -1
		}
		got <- m
	}()
	b.release(n)
	if m := <-got; m != 5 {
		t.Fatalf("waiter took %d", m)
	}
}

// TestBudgetBackpressure: two tailers share a budget and the handle holds every chunk un-acked;
// the readers stop once the budget is used, go on as the acks arrive (delivered or failed), and
// every line arrives exactly once. A budget smaller than one chunk lets one chunk through at a
// time.
func TestBudgetBackpressure(t *testing.T) {
	const files, perFile, chunk = 4, 200, 10
	msgLen := len(fmt.Sprintf("f%d-%05d", 0, 0))
	perChunk := int64(chunk) * (recordSize + int64(msgLen))
	tests := []struct {
		name   string
		limit  int64
		status event.Status
	}{
		{"three chunks", 6 * perChunk, event.Delivered},
		{"smaller than a chunk", 100, event.Delivered},
		{"failed acks release too", 4 * perChunk, event.Failed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			budget := NewBudget(tt.limit)
			s := &sink{hold: true}
			var want []string
			for in := range 2 {
				dir := t.TempDir()
				for f := range files / 2 {
					id := in*files/2 + f
					var b strings.Builder
					for i := range perFile {
						line := fmt.Sprintf("f%d-%05d", id, i)
						b.WriteString(line + "\n")
						want = append(want, line)
					}
					writeFile(t, filepath.Join(dir, fmt.Sprintf("%d.log", f)), b.String())
				}
				cfg := testConfig(t, dir, newStore(t, t.TempDir()))
				cfg.Input = fmt.Sprintf("%s-%d", cfg.Input, in)
				cfg.ChunkRecords = chunk
				cfg.Budget = budget
				start(t, cfg, s)
			}
			chunkLimit := budget.chunks.limit
			done := 0
			deadline := time.Now().Add(30 * time.Second)
			for {
				// Wait until the readers stop: the budget is used up, or everything arrived.
				prev := -1
				for n := len(s.records()); n != prev; n = len(s.records()) {
					prev = n
					time.Sleep(40 * time.Millisecond)
				}
				s.mu.Lock()
				n, held := len(s.recs), s.batches[done:]
				s.mu.Unlock()
				if used := budget.Used(); used > tt.limit {
					t.Fatalf("budget used %d > limit %d", used, tt.limit)
				}
				if n == len(want) {
					break
				}
				if len(held) == 0 {
					if time.Now().After(deadline) {
						t.Fatalf("readers stopped after %d of %d records with no chunk in flight", n, len(want))
					}
					continue
				}
				if chunkLimit < perChunk && len(held) != 1 {
					t.Fatalf("%d chunks in flight with a budget smaller than a chunk", len(held))
				}
				var inFlight int64
				for _, b := range held {
					inFlight += int64(b.Len()) * (recordSize + int64(msgLen))
				}
				if chunkLimit >= perChunk && inFlight > chunkLimit {
					t.Fatalf("%d bytes of records in flight, over the chunks' half %d", inFlight, chunkLimit)
				}
				for _, b := range held {
					b.Done(tt.status)
				}
				done += len(held)
			}
			for _, b := range s.batches[done:] {
				b.Done(tt.status)
			}
			waitFor(t, "the budget released", func() bool { return budget.Used() == 0 })
			got := s.messages()
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				i := firstDiff(got, want)
				t.Fatalf("%d records, want %d; first difference at %d", len(got), len(want), i)
			}
		})
	}
}

// TestChunksSizedToBudget: with a small budget a reader closes its chunks at 1/chunksInFlight of
// the chunks' half, so that several are in flight at once. A chunk that took the whole half
// stalled delivery: the output's second body for it waited for its flush interval, and no
// other chunk fit meanwhile (4k records/s in skiff bench --memory-limit 2MiB, from 430k).
func TestChunksSizedToBudget(t *testing.T) {
	const lines, msgLen = 3000, 100
	budget := NewBudget(256 << 10)
	limit := chunkBytesFor(budget)
	if want := budget.chunks.limit / chunksInFlight; limit != want {
		t.Fatalf("chunk limit %d, want %d", limit, want)
	}
	var mu sync.Mutex
	var charges []int64
	var slots int // record slots allocated (cap), against len(s.records()) used
	s := &sink{slow: func(c *event.Chunk) bool {
		var n int64
		for i := range c.Records {
			n += recordSize + int64(len(c.Records[i].Message))
		}
		mu.Lock()
		charges = append(charges, n)
		slots += cap(c.Records)
		mu.Unlock()
		return false
	}}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "0.log"), numberedLines(lines, msgLen))
	cfg := testConfig(t, dir, newStore(t, t.TempDir()))
	cfg.ChunkRecords = 100000 // the budget, not the record count, closes the chunks
	cfg.Budget = budget
	start(t, cfg, s)
	waitFor(t, "every line", func() bool { return len(s.records()) == lines })
	mu.Lock()
	defer mu.Unlock()
	if total := int64(lines) * (recordSize + msgLen); int64(len(charges)) < total/limit {
		t.Fatalf("%d chunks for %d bytes of records, want at least %d", len(charges), total, total/limit)
	}
	for i, n := range charges {
		if n > limit+recordSize+msgLen {
			t.Fatalf("chunk %d charges %d bytes, over the limit %d by more than a record", i, n, limit)
		}
	}
	// Record slices are sized for the records the chunk's bytes allow, not for ChunkRecords.
	if slots > lines*13/10 {
		t.Fatalf("%d record slots allocated for %d records, want at most 1.3 per record", slots, lines)
	}
}

func TestChunkBytesFor(t *testing.T) {
	for _, tt := range []struct {
		budget *Budget
		want   int64
	}{
		{nil, maxChunkBytes},
		{NewBudget(64 << 20), maxChunkBytes},
		{NewBudget(4 << 20), 256 << 10},
		{NewBudget(1 << 10), minChunkBytes},
	} {
		if got := chunkBytesFor(tt.budget); got != tt.want {
			t.Errorf("chunkBytesFor(%v) = %d, want %d", tt.budget, got, tt.want)
		}
	}
}
