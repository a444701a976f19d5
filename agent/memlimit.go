package agent

import (
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/skiff-logs/skiff/agent/config"
)

// memoryOverhead is what a running agent holds besides memory_limit's chunks and reader
// working sets, plus room for the garbage collector. Measured with 1,000 tailed files and 500
// pods (docs/performance.md): ~24 MiB of per-file state, goroutine stacks, the Kubernetes
// metadata cache, the Elasticsearch request bodies and the Go runtime's own metadata. With
// less room the collector runs back to back: at the same soft limit, a smaller memory_limit
// gave more records per CPU-second, not fewer.
const memoryOverhead = 32 << 20

// SoftMemoryLimit is the Go runtime soft memory limit derived from memory_limit: twice the
// budget (what the budget counts is the bytes of messages and records, not the capacity of the
// blocks holding them) plus memoryOverhead; 48 MiB for the default memory_limit.
// Past it the garbage collector runs more often instead of letting the heap grow to twice its
// live size.
func SoftMemoryLimit(memoryLimit config.ByteSize) int64 {
	return 2*int64(memoryLimit) + memoryOverhead
}

// ApplyMemoryLimit sets the Go runtime's soft memory limit to SoftMemoryLimit(cfg.MemoryLimit)
// unless the GOMEMLIMIT environment variable is set (the operator's choice wins) or
// memory_limit is off. It returns the limit it set, or 0. The limit is process-wide: the
// binary calls this once per agent it runs; tests and libraries that host agents need not.
func ApplyMemoryLimit(cfg *config.Config, log *slog.Logger) int64 {
	if cfg.MemoryLimit <= 0 || os.Getenv("GOMEMLIMIT") != "" {
		return 0
	}
	limit := SoftMemoryLimit(cfg.MemoryLimit)
	debug.SetMemoryLimit(limit)
	log.Info("go runtime soft memory limit set from memory_limit (GOMEMLIMIT overrides it)",
		"memory_limit", int64(cfg.MemoryLimit), "gomemlimit", limit)
	return limit
}
