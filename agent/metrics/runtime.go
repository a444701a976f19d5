package metrics

import (
	"bytes"
	"os"
	"runtime"
	rm "runtime/metrics"
	"strconv"
	"sync"
	"syscall"
)

// scalar is one unlabelled series of the process collector.
type scalar struct {
	fam *family
	v   float64
	ok  bool // false: not available this scrape, left out
}

func appendScalars(b []byte, ss []scalar) []byte {
	for i := range ss {
		if ss[i].ok {
			b = appendSample(appendHeader(b, ss[i].fam), ss[i].fam, "", nil, "", ss[i].v)
		}
	}
	return b
}

// goFamily is one Go runtime series: its name, type and help (as client_golang's Go collector
// had them, so that dashboards keep working) and the runtime/metrics samples it sums.
type goFamily struct {
	name, typ, help string
	samples         []string
}

// goFamilies are sorted by name; go_info (no samples) is written as go_info{version} 1.
var goFamilies = []goFamily{
	{"go_gc_gogc_percent", "gauge", "Heap size target percentage configured by the user, otherwise 100. This value is set by the GOGC environment variable, and the runtime/debug.SetGCPercent function. Sourced from /gc/gogc:percent.", []string{"/gc/gogc:percent"}},
	{"go_gc_gomemlimit_bytes", "gauge", "Go runtime memory limit configured by the user, otherwise math.MaxInt64. This value is set by the GOMEMLIMIT environment variable, and the runtime/debug.SetMemoryLimit function. Sourced from /gc/gomemlimit:bytes.", []string{"/gc/gomemlimit:bytes"}},
	{"go_goroutines", "gauge", "Number of goroutines that currently exist.", []string{"/sched/goroutines:goroutines"}},
	{"go_info", "gauge", "Information about the Go environment.", nil},
	{"go_memstats_alloc_bytes", "gauge", "Number of bytes allocated in heap and currently in use. Equals to /memory/classes/heap/objects:bytes.", []string{"/memory/classes/heap/objects:bytes"}},
	{"go_memstats_alloc_bytes_total", "counter", "Total number of bytes allocated in heap until now, even if released already. Equals to /gc/heap/allocs:bytes.", []string{"/gc/heap/allocs:bytes"}},
	{"go_memstats_heap_alloc_bytes", "gauge", "Number of heap bytes allocated and currently in use, same as go_memstats_alloc_bytes. Equals to /memory/classes/heap/objects:bytes.", []string{"/memory/classes/heap/objects:bytes"}},
	{"go_memstats_heap_inuse_bytes", "gauge", "Number of heap bytes that are in use. Equals to /memory/classes/heap/objects:bytes + /memory/classes/heap/unused:bytes", []string{"/memory/classes/heap/objects:bytes", "/memory/classes/heap/unused:bytes"}},
	{"go_memstats_heap_objects", "gauge", "Number of currently allocated objects. Equals to /gc/heap/objects:objects.", []string{"/gc/heap/objects:objects"}},
	{"go_memstats_next_gc_bytes", "gauge", "Number of heap bytes when next garbage collection will take place. Equals to /gc/heap/goal:bytes.", []string{"/gc/heap/goal:bytes"}},
	{"go_memstats_stack_sys_bytes", "gauge", "Number of bytes obtained from system for stack allocator. Equals to /memory/classes/heap/stacks:bytes + /memory/classes/os-stacks:bytes.", []string{"/memory/classes/heap/stacks:bytes", "/memory/classes/os-stacks:bytes"}},
	{"go_memstats_sys_bytes", "gauge", "Number of bytes obtained from system. Equals to /memory/classes/total:byte.", []string{"/memory/classes/total:bytes"}},
	{"go_sched_gomaxprocs_threads", "gauge", "The current runtime.GOMAXPROCS setting, or the number of operating system threads that can execute user-level Go code simultaneously. Sourced from /sched/gomaxprocs:threads.", []string{"/sched/gomaxprocs:threads"}},
	{"go_threads", "gauge", "Number of OS threads created.", []string{"/sched/threads/total:threads"}},
}

// goCollector writes the Go runtime series of goFamilies from runtime/metrics (which, unlike
// runtime.ReadMemStats, does not stop the world).
type goCollector struct {
	mu      sync.Mutex // guards samples
	fams    []*family
	version []string    // go_info's label value
	samples []rm.Sample // the distinct samples of goFamilies
	index   [][]int     // per family, its samples' indices
}

// NewGoCollector returns a collector of the Go runtime's series: go_goroutines, go_threads,
// go_info{version}, go_gc_gogc_percent, go_gc_gomemlimit_bytes, go_sched_gomaxprocs_threads and
// go_memstats_{alloc_bytes,alloc_bytes_total,heap_alloc_bytes,heap_inuse_bytes,heap_objects,
// next_gc_bytes,stack_sys_bytes,sys_bytes}, named, typed and described as client_golang's Go
// collector did. It leaves out the go_gc_duration_seconds summary and the rarely used
// go_memstats_ series. go_threads is the number of threads now (/sched/threads/total), where
// client_golang counted the threads ever created. A series whose runtime metric the running
// Go does not know is left out.
func NewGoCollector() Collector {
	c := &goCollector{version: []string{runtime.Version()}}
	pos := map[string]int{}
	for _, f := range goFamilies {
		var labels []string
		if f.samples == nil {
			labels = []string{"version"}
		}
		c.fams = append(c.fams, newFamily(f.name, f.help, f.typ, labels))
		var idx []int
		for _, s := range f.samples {
			i, ok := pos[s]
			if !ok {
				i = len(c.samples)
				pos[s] = i
				c.samples = append(c.samples, rm.Sample{Name: s})
			}
			idx = append(idx, i)
		}
		c.index = append(c.index, idx)
	}
	return c
}

func (c *goCollector) names() []string {
	ns := make([]string, len(c.fams))
	for i, f := range c.fams {
		ns[i] = f.name
	}
	return ns
}

func (c *goCollector) appendText(b []byte) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	rm.Read(c.samples)
	for i, f := range c.fams {
		if c.index[i] == nil {
			b = appendSample(appendHeader(b, f), f, "", c.version, "", 1)
			continue
		}
		sum, ok := 0.0, true
		for _, j := range c.index[i] {
			switch v := c.samples[j].Value; v.Kind() {
			case rm.KindUint64:
				sum += float64(v.Uint64())
			case rm.KindFloat64:
				sum += v.Float64()
			default: // KindBad: unknown to this Go
				ok = false
			}
		}
		if ok {
			b = appendSample(appendHeader(b, f), f, "", nil, "", sum)
		}
	}
	return b
}

// processCollector writes the process_ series from /proc/self (Linux).
type processCollector struct {
	fams      []*family
	pageSize  float64
	startOnce sync.Once
	start     float64 // process start time, seconds since the epoch; 0 when unknown
}

// Indices into processCollector.fams (sorted by name).
const (
	procCPU = iota
	procMaxFDs
	procOpenFDs
	procRSS
	procStart
	procVirtual
	procVirtualMax
	procN
)

// NewProcessCollector returns a collector of the process series client_golang's process
// collector had, named and described the same: process_cpu_seconds_total,
// process_max_fds, process_open_fds, process_resident_memory_bytes,
// process_start_time_seconds, process_virtual_memory_bytes and
// process_virtual_memory_max_bytes, read from /proc/self and getrlimit on each scrape (the
// network counters of /proc/net/dev are left out). A series that cannot be read is left out of
// that scrape.
func NewProcessCollector() Collector {
	f := func(name, typ, help string) *family { return newFamily(name, help, typ, nil) }
	return &processCollector{
		pageSize: float64(os.Getpagesize()),
		fams: []*family{
			procCPU:        f("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds."),
			procMaxFDs:     f("process_max_fds", "gauge", "Maximum number of open file descriptors."),
			procOpenFDs:    f("process_open_fds", "gauge", "Number of open file descriptors."),
			procRSS:        f("process_resident_memory_bytes", "gauge", "Resident memory size in bytes."),
			procStart:      f("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds."),
			procVirtual:    f("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes."),
			procVirtualMax: f("process_virtual_memory_max_bytes", "gauge", "Maximum amount of virtual memory available in bytes."),
		},
	}
}

func (c *processCollector) names() []string {
	ns := make([]string, len(c.fams))
	for i, f := range c.fams {
		ns[i] = f.name
	}
	return ns
}

// userHZ is the unit of the CPU times in /proc/self/stat (USER_HZ, 100 on every Linux
// architecture Go supports).
const userHZ = 100

func (c *processCollector) appendText(b []byte) []byte {
	var out [procN]scalar
	for i := range out {
		out[i].fam = c.fams[i]
	}
	if st, ok := readStat(); ok {
		out[procCPU] = scalar{c.fams[procCPU], float64(st.utime+st.stime) / userHZ, true}
		out[procRSS] = scalar{c.fams[procRSS], float64(st.rss) * c.pageSize, true}
		out[procVirtual] = scalar{c.fams[procVirtual], float64(st.vsize), true}
		c.startOnce.Do(func() {
			if bt, ok := bootTime(); ok {
				c.start = bt + float64(st.starttime)/userHZ
			}
		})
		if c.start > 0 {
			out[procStart] = scalar{c.fams[procStart], c.start, true}
		}
	}
	if n, ok := openFDs(); ok {
		out[procOpenFDs] = scalar{c.fams[procOpenFDs], float64(n), true}
	}
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil {
		out[procMaxFDs] = scalar{c.fams[procMaxFDs], float64(lim.Cur), true}
	}
	if syscall.Getrlimit(syscall.RLIMIT_AS, &lim) == nil {
		out[procVirtualMax] = scalar{c.fams[procVirtualMax], float64(lim.Cur), true}
	}
	return appendScalars(b, out[:])
}

// stat holds the fields of /proc/self/stat the process collector uses.
type stat struct {
	utime, stime, starttime, vsize, rss uint64
}

// readStat parses /proc/self/stat. The command name (field 2) is in parentheses and may hold
// spaces and parentheses, so the fields are counted from the last ')'.
func readStat() (stat, bool) {
	data, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return stat{}, false
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return stat{}, false
	}
	fields := bytes.Fields(data[i+1:]) // fields[0] is field 3 (state)
	if len(fields) < 22 {
		return stat{}, false
	}
	num := func(field int) uint64 {
		n, _ := strconv.ParseUint(string(fields[field-3]), 10, 64)
		return n
	}
	return stat{utime: num(14), stime: num(15), starttime: num(22), vsize: num(23), rss: num(24)}, true
}

// bootTime returns the btime line of /proc/stat: the boot time in seconds since the epoch.
func bootTime() (float64, bool) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	for line := range bytes.Lines(data) {
		if v, ok := bytes.CutPrefix(line, []byte("btime ")); ok {
			n, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64)
			return float64(n), err == nil
		}
	}
	return 0, false
}

// openFDs counts the entries of /proc/self/fd (the descriptor reading it included, as
// client_golang counted).
func openFDs() (int, bool) {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return 0, false
	}
	defer d.Close()
	n := 0
	for {
		names, err := d.Readdirnames(256)
		n += len(names)
		if err != nil {
			return n, true
		}
	}
}
