package agent

import (
	"io"
	"log/slog"
	"math"
	"runtime/debug"
	"testing"

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
		{"default budget", config.DefaultMemoryLimit, "", 2*config.DefaultMemoryLimit + 32<<20},
		{"larger budget", 256 << 20, "", 544 << 20},
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
