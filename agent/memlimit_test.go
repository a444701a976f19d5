package agent

import (
	"context"
	"io"
	"log/slog"
	"math"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/skiff-logs/skiff/agent/config"
)

func TestApplyMemoryLimit(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	tests := []struct {
		name        string
		memoryLimit config.ByteSize
		env         string
		want        int64 // what ApplyMemoryLimit returns and the runtime then holds (0: unchanged)
	}{
		{"default budget", config.DefaultMemoryLimit, "", 2*config.DefaultMemoryLimit + 20<<20},
		{"larger budget", 256 << 20, "", 532 << 20},
		{"GOMEMLIMIT set wins", 256 << 20, "100MiB", 0},
		{"budget off", 0, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("GOMEMLIMIT", tt.env)
			debug.SetMemoryLimit(math.MaxInt64)
			got := ApplyMemoryLimit(&config.Config{MemoryLimit: tt.memoryLimit}, log)
			if got != tt.want {
				t.Errorf("ApplyMemoryLimit = %d, want %d", got, tt.want)
			}
			runtime := debug.SetMemoryLimit(-1)
			if want := tt.want; want == 0 && runtime != math.MaxInt64 || want != 0 && runtime != want {
				t.Errorf("runtime soft memory limit %d after ApplyMemoryLimit returned %d", runtime, got)
			}
		})
	}
}

func TestMemoryLimit(t *testing.T) {
	es := func(workers int, flush config.ByteSize) config.Output {
		return config.Output{Type: "elasticsearch", Workers: workers, FlushBytes: flush}
	}
	file := config.Output{Type: "file", FlushBytes: 1 << 20}
	tests := []struct {
		name    string
		limit   config.ByteSize
		outputs []config.Output
		want    config.ByteSize
	}{
		{"defaults fit exactly", config.DefaultMemoryLimit, []config.Output{es(0, config.DefaultESFlushBytes)}, config.DefaultMemoryLimit},
		{"no outputs", 8 << 20, nil, 8 << 20},
		{"four workers of 2 MiB", 8 << 20, []config.Output{es(4, 2<<20)}, 32 << 20},
		{"elasticsearch and file", 8 << 20, []config.Output{es(2, 1<<20), file}, 12 << 20},
		{"larger limit kept", 64 << 20, []config.Output{es(4, 2<<20)}, 64 << 20},
		{"off stays off", 0, []config.Output{es(4, 2<<20)}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := MemoryLimit(&config.Config{MemoryLimit: tt.limit, Outputs: tt.outputs}); got != tt.want {
				t.Errorf("MemoryLimit = %d MiB, want %d MiB", got>>20, tt.want>>20)
			}
		})
	}
}

func TestLimitFor(t *testing.T) {
	const mib = 1 << 20
	for _, tt := range []struct {
		base, live, nonHeap, want int64
	}{
		{30 * mib, 12 * mib, 8 * mib, 30 * mib},    // room enough: the base
		{30 * mib, 20 * mib, 8 * mib, 38 * mib},    // live + half of it + the rest
		{30 * mib, 2 * mib, 27 * mib, 33 * mib},    // at least minHeadroom above
		{100 * mib, 60 * mib, 10 * mib, 100 * mib}, // a large base holds
		{30 * mib, 200 * mib, 10 * mib, 310 * mib}, // far past the base
	} {
		if got := limitFor(tt.base, tt.live, tt.nonHeap); got != tt.want {
			t.Errorf("limitFor(%d, %d, %d) = %d MiB, want %d MiB", tt.base/mib, tt.live/mib, tt.nonHeap/mib, got/mib, tt.want/mib)
		}
	}
}

// A live heap that outgrows the base limit raises it; once it is gone, the limit comes back.
func TestFollowLiveHeap(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	const base = 16 << 20
	debug.SetMemoryLimit(base)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { FollowLiveHeap(ctx, base, 5*time.Millisecond); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	keep := make([]byte, 64<<20)
	for i := range keep {
		keep[i] = byte(i)
	}
	wait := func(what string, ok func(int64) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			runtime.GC()
			l := debug.SetMemoryLimit(-1)
			if ok(l) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: soft limit %d MiB", what, l>>20)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	wait("raised above a 64 MiB live heap", func(l int64) bool { return l >= 64<<20+64<<19 })
	runtime.KeepAlive(keep)
	keep = nil
	wait("back to the base", func(l int64) bool { return l == base })
}
