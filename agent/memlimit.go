package agent

import (
	"context"
	"log/slog"
	"os"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"time"

	"github.com/skiff-logs/skiff/agent/config"
)

// memoryOverhead is what a running agent holds besides memory_limit's chunks, reader working
// sets and recycled chunk memory, plus room for the garbage collector. Measured with 1,000
// tailed files and 500 pods (docs/performance.md): ~16 MiB of per-file state, the Kubernetes
// metadata cache, the Elasticsearch request bodies and the Go runtime's own metadata, and a
// few MiB for garbage (reading recycles its memory, so little is made): at 20 MiB make
// bench-kube runs ~45 collections per 256 MiB, at 550k records per CPU-second.
// Where an agent holds more (thousands of files, a larger metadata cache), FollowLiveHeap
// raises the limit before the collector would run back to back.
const memoryOverhead = 20 << 20

// defaultESWorkers is outputs/elasticsearch.DefaultWorkers, the workers of an elasticsearch
// output whose configuration leaves them at 0 (agent does not import the outputs).
const defaultESWorkers = 2

// MemoryLimit returns the budget the agent uses: cfg.MemoryLimit, raised when needed so that
// the chunks half of the budget holds twice what the outputs' request bodies can take at once
// (the sum of workers × flush_bytes: one body per elasticsearch worker, one per file output).
// With less, readers wait for acknowledgements that only come once the bodies are full, and
// every request waits for flush_interval instead: four workers of 2 MiB bodies under an 8 MiB
// budget delivered 61k records/s instead of 586k (docs/performance.md). Zero means no budget.
func MemoryLimit(cfg *config.Config) config.ByteSize {
	if cfg.MemoryLimit <= 0 {
		return 0
	}
	var bodies config.ByteSize
	for _, o := range cfg.Outputs {
		n := 1
		if o.Type == "elasticsearch" {
			n = o.Workers
			if n == 0 {
				n = defaultESWorkers
			}
		}
		bodies += config.ByteSize(n) * o.FlushBytes
	}
	// The chunks half is memory_limit/2: it must hold 2 × bodies.
	return max(cfg.MemoryLimit, 4*bodies)
}

// SoftMemoryLimit is the Go runtime soft memory limit derived from memory_limit: twice the
// budget (what the budget counts is the bytes of messages and records, not the capacity of the
// blocks holding them) plus memoryOverhead; 28 MiB for the default memory_limit.
// Past it the garbage collector runs more often instead of letting the heap grow to twice its
// live size.
func SoftMemoryLimit(memoryLimit config.ByteSize) int64 {
	return 2*int64(memoryLimit) + memoryOverhead
}

// ApplyMemoryLimit sets the Go runtime's soft memory limit to SoftMemoryLimit of the budget
// the agent uses (MemoryLimit) unless the GOMEMLIMIT environment variable is set (the
// operator's choice wins) or memory_limit is off. It returns the limit it set, or 0. The limit
// is process-wide: the binary calls this once per agent it runs; tests and libraries that host
// agents need not.
func ApplyMemoryLimit(cfg *config.Config, log *slog.Logger) int64 {
	budget := MemoryLimit(cfg)
	if budget <= 0 || os.Getenv("GOMEMLIMIT") != "" {
		return 0
	}
	limit := SoftMemoryLimit(budget)
	debug.SetMemoryLimit(limit)
	log.Info("go runtime soft memory limit set from memory_limit (GOMEMLIMIT overrides it)",
		"memory_limit", int64(budget), "gomemlimit", limit)
	return limit
}

// FollowLiveHeap keeps the soft memory limit at base, or above it by as much as the live heap
// needs, until ctx ends: every interval it sets the limit to limitFor(base, ...) of the runtime's
// current figures. A fixed limit that the live heap approaches makes the collector run back to
// back (up to half the CPU); following it, the agent spends memory instead. The limit in force
// is exported as go_gc_gomemlimit_bytes.
func FollowLiveHeap(ctx context.Context, base int64, every time.Duration) {
	samples := []rtmetrics.Sample{
		{Name: "/gc/heap/live:bytes"},
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	set := base
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		rtmetrics.Read(samples)
		u := func(i int) int64 { return int64(samples[i].Value.Uint64()) }
		live := u(0)
		nonHeap := u(1) - u(2) - u(3) - u(4) - u(5)
		if l := limitFor(base, live, nonHeap); l != set {
			debug.SetMemoryLimit(l)
			set = l
		}
	}
}

// minHeadroom is the least room limitFor leaves the collector above the live heap.
const minHeadroom = 4 << 20

// limitFor is the soft limit for a live heap of live bytes and nonHeap bytes of stacks and
// runtime metadata: base, or what they take plus half the live heap (at least minHeadroom) for
// garbage, whichever is more.
func limitFor(base, live, nonHeap int64) int64 {
	return max(base, nonHeap+live+max(live/2, minHeadroom))
}
