package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-logs/skiff/agent/event"
	"github.com/skiff-logs/skiff/agent/kube/core"
	"github.com/skiff-logs/skiff/agent/metrics"
)

// Config configures an Enricher.
type Config struct {
	// NodeName is the node whose pods are watched. Required.
	NodeName string
	// PodAnnotations lists the annotation keys copied to records.
	PodAnnotations []string
	// NamespaceLabels copies namespace labels to records.
	NamespaceLabels bool
	// Dedot replaces '.' by '_' in label and annotation keys.
	Dedot bool
	// DeletedPodGrace is how long a deleted pod stays in the cache.
	DeletedPodGrace time.Duration
	// Logger receives API errors, rate limited (default slog.Default()).
	Logger *slog.Logger
}

// Result is what a file's records get from the cache. The zero Result (pod unknown) leaves
// records as they are.
type Result struct {
	// Kube is the container's metadata, or nil when the pod is not (yet) known.
	Kube *event.Kube
	// Exclude: the pod or its namespace is annotated skiff.io/exclude: "true"; drop its records.
	Exclude bool
	// ParseJSON: the pod is annotated skiff.io/parser: json.
	ParseJSON bool
}

// errorLogInterval is the least time between two logged API errors of one resource.
const errorLogInterval = 30 * time.Second

// Enricher keeps a cache of the pods on one node and of all namespaces, fed by informers, and
// answers per log file what its records are to carry.
//
// It never blocks the pipeline: before the first sync, or while the API is unreachable, Lookup
// answers from what the cache holds (possibly nothing); records are enriched once the cache
// knows their pod. Deleted pods stay in the cache for DeletedPodGrace.
type Enricher struct {
	cfg    Config
	log    *slog.Logger
	podInf cache.SharedIndexInformer
	nsInf  cache.SharedIndexInformer
	podReg cache.ResourceEventHandlerRegistration
	nsReg  cache.ResourceEventHandlerRegistration
	now    func() time.Time

	mu     sync.RWMutex
	byUID  map[string]*podState
	byName map[podKey][]*podState
	nss    map[string]*nsState

	// gen changes whenever a change in the cache may change a Lookup's answer.
	gen atomic.Uint64
	// files caches the Result per file: *event.Source → *fileEntry.
	files sync.Map
	// round counts sweeps; an entry of files not used for two rounds is dropped.
	round atomic.Uint32

	found, missing *metrics.Counter
}

// fileEntry is the cached Lookup answer for one file, valid while the Enricher's gen is gen.
type fileEntry struct {
	gen  uint64
	res  Result
	base *event.Kube   // the container's Kube that res.Kube was made from
	seen atomic.Uint32 // the sweep round of the last use
}

// New builds an Enricher watching pods (of all namespaces: core.Client.Pods("")) and
// namespaces' metadata through meta. It starts nothing; Run does.
func New(pods core.Pods, meta metadata.Interface, cfg Config) (*Enricher, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("kube: node name is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	e := &Enricher{
		cfg:     cfg,
		log:     cfg.Logger,
		now:     time.Now,
		byUID:   map[string]*podState{},
		byName:  map[podKey][]*podState{},
		nss:     map[string]*nsState{},
		found:   metrics.KubeLookups.WithLabelValues("found"),
		missing: metrics.KubeLookups.WithLabelValues("missing"),
	}
	node := fields.OneTermEqualSelector("spec.nodeName", cfg.NodeName).String()
	e.podInf = cache.NewSharedIndexInformerWithOptions(e.listWatch("pods", pods,
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = node
			return pods.List(ctx, o)
		},
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = node
			return pods.Watch(ctx, o)
		}), &core.Pod{}, cache.SharedIndexInformerOptions{ObjectDescription: "pods on node " + cfg.NodeName})
	nss := meta.Resource(core.SchemeGroupVersion.WithResource("namespaces"))
	e.nsInf = cache.NewSharedIndexInformerWithOptions(e.listWatch("namespaces", meta,
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return nss.List(ctx, o) },
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) { return nss.Watch(ctx, o) }),
		&metav1.PartialObjectMetadata{}, cache.SharedIndexInformerOptions{ObjectDescription: "namespace metadata"})

	var err error
	errs := []error{
		e.podInf.SetTransform(e.transformPod),
		e.nsInf.SetTransform(e.transformNamespace),
		e.podInf.SetWatchErrorHandler(e.streamErrors),
		e.nsInf.SetWatchErrorHandler(e.streamErrors),
	}
	e.podReg, err = e.podInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { e.onPod(obj) },
		UpdateFunc: func(_, obj any) { e.onPod(obj) },
		DeleteFunc: e.onPodDelete,
	})
	errs = append(errs, err)
	e.nsReg, err = e.nsInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { e.onNamespace(obj) },
		UpdateFunc: func(_, obj any) { e.onNamespace(obj) },
		DeleteFunc: e.onNamespaceDelete,
	})
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("kube: set up informers: %w", err)
	}
	return e, nil
}

// Run runs the informers and the sweeper of deleted pods until ctx ends. It returns nil after
// they stopped. Call it once.
func (e *Enricher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { e.podInf.RunWithContext(ctx) })
	wg.Go(func() { e.nsInf.RunWithContext(ctx) })
	defer wg.Wait()
	tick := time.NewTicker(sweepInterval(e.cfg.DeletedPodGrace))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			e.sweep(e.now())
		}
	}
}

// sweepInterval is how often deleted pods past their grace and idle file entries are dropped:
// a quarter of the grace, between 1s and 30s.
func sweepInterval(grace time.Duration) time.Duration {
	return min(max(grace/4, time.Second), 30*time.Second)
}

// Synced reports whether the cache holds a complete copy of the pods and namespaces (as of the
// first list; later changes arrive as they come).
func (e *Enricher) Synced() bool { return e.podReg.HasSynced() && e.nsReg.HasSynced() }

// WaitSynced waits until Synced or ctx ends, and reports Synced. Run must be running.
func (e *Enricher) WaitSynced(ctx context.Context) bool {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !e.Synced() {
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
	return true
}

// Lookup returns what the records of the file src are to carry. It is meant to be called once
// per chunk: the answer is kept per Source and worked out again only after the cache changed,
// so the usual cost is one sync.Map load and two atomic loads. Safe for concurrent use; src
// must be a Source that is never modified (as the tailer's are).
func (e *Enricher) Lookup(src *event.Source) Result {
	gen := e.gen.Load()
	var prev *fileEntry
	if v, ok := e.files.Load(src); ok {
		prev = v.(*fileEntry)
		if r := e.round.Load(); prev.seen.Load() != r {
			prev.seen.Store(r)
		}
		if prev.gen == gen {
			return prev.res
		}
	}
	f := e.resolve(src, gen, prev)
	e.files.Store(src, f)
	return f.res
}

// resolve works out a file's Result from the cache.
func (e *Enricher) resolve(src *event.Source, gen uint64, prev *fileEntry) *fileEntry {
	f := &fileEntry{gen: gen}
	f.seen.Store(e.round.Load())
	if src.Namespace == "" {
		return f // not a container log file
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	p, c := e.findPod(src)
	if p == nil {
		e.missing.Inc()
		if ns := e.nss[src.Namespace]; ns != nil {
			f.res.Exclude = ns.exclude
		}
		return f
	}
	e.found.Inc()
	f.res.Exclude, f.res.ParseJSON = p.exclude, p.ParseJSON
	if c < 0 {
		// Not in the pod's spec as cached: the pod's metadata, and what the path tells.
		var nsLabels map[string]string
		if ns := e.nss[p.Namespace]; ns != nil {
			nsLabels = ns.labels
		}
		f.res.Kube = p.kube(nsLabels, src.Container, "", src.ContainerID, false)
		return f
	}
	f.base = p.kubes[c]
	id := p.Containers[c].idFor(src)
	if prev != nil && prev.base == f.base && prev.res.Kube != nil && prev.res.Kube.ContainerID == id {
		f.res.Kube = prev.res.Kube
	} else {
		f.res.Kube = withID(f.base, id)
	}
	return f
}

// findPod finds src's pod and the index of its container (-1 when the pod has no such
// container): by uid when the path tells it; else by namespace and name, preferring the pod that
// ran the container id in the path (a pod deleted and created again under the same name, as
// StatefulSets do), then the existing one. Called with mu held.
func (e *Enricher) findPod(src *event.Source) (*podState, int) {
	var p *podState
	if src.PodUID != "" {
		p = e.byUID[src.PodUID]
	} else {
		p = pickByName(e.byName[podKey{src.Namespace, src.PodName}], src)
	}
	if p == nil {
		return nil, -1
	}
	for i := range p.Containers {
		if p.Containers[i].Name == src.Container {
			return p, i
		}
	}
	return p, -1
}

// pickByName picks src's pod among pods of the same namespace and name.
func pickByName(list []*podState, src *event.Source) *podState {
	if src.ContainerID != "" {
		for _, p := range list {
			if c := p.container(src.Container); c != nil && (c.ID == src.ContainerID || c.LastID == src.ContainerID) {
				return p
			}
		}
	}
	for _, p := range list {
		if p.deleted.IsZero() {
			return p
		}
	}
	if len(list) > 0 {
		return list[len(list)-1]
	}
	return nil
}

func (e *Enricher) transformPod(obj any) (any, error) {
	if p, ok := obj.(*core.Pod); ok {
		return e.podInfoOf(p), nil
	}
	return obj, nil // a *podInfo already (the transform must be idempotent)
}

func (e *Enricher) transformNamespace(obj any) (any, error) {
	if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
		return slimNamespace(m, e.cfg.NamespaceLabels), nil
	}
	return obj, nil
}

// onPod takes a pod added or changed.
func (e *Enricher) onPod(obj any) {
	info, ok := obj.(*podInfo)
	if !ok {
		return
	}
	uid := string(info.UID)
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.byUID[uid]
	if old != nil && old.deleted.IsZero() && sameFacts(old.podInfo, info) {
		return // only fields skiff does not use changed
	}
	s := &podState{podInfo: info}
	s.build(e.nss[s.Namespace])
	e.byUID[uid] = s
	k := podKey{s.Namespace, s.Name}
	list := slices.DeleteFunc(e.byName[k], func(q *podState) bool { return q.UID == s.UID })
	e.byName[k] = append(list, s)
	metrics.KubeCachedPods.Set(float64(len(e.byUID)))
	e.gen.Add(1)
}

// onPodDelete marks a pod deleted; the sweeper removes it after the grace period.
func (e *Enricher) onPodDelete(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	p, ok := obj.(*podInfo)
	if !ok {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if s := e.byUID[string(p.UID)]; s != nil && s.deleted.IsZero() {
		s.deleted = e.now()
	}
}

// onNamespace takes a namespace added or changed, and rebuilds its pods' Kubes when what they
// carry of it changed.
func (e *Enricher) onNamespace(obj any) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return
	}
	s := e.newNSState(m)
	e.mu.Lock()
	defer e.mu.Unlock()
	if old := e.nss[m.Name]; old != nil && sameNS(old, s) {
		return
	}
	e.nss[m.Name] = s
	for _, p := range e.byUID {
		if p.Namespace == m.Name {
			p.build(s)
		}
	}
	e.gen.Add(1)
}

func (e *Enricher) onNamespaceDelete(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
		e.mu.Lock()
		delete(e.nss, m.Name)
		e.mu.Unlock()
	}
}

// sweep drops pods deleted at least the grace period before now, and file entries not used
// for two sweeps (files that ended; a file that goes on is looked up again).
func (e *Enricher) sweep(now time.Time) {
	e.mu.Lock()
	removed := false
	for uid, p := range e.byUID {
		if p.deleted.IsZero() || now.Sub(p.deleted) < e.cfg.DeletedPodGrace {
			continue
		}
		delete(e.byUID, uid)
		k := podKey{p.Namespace, p.Name}
		if list := slices.DeleteFunc(e.byName[k], func(q *podState) bool { return q == p }); len(list) > 0 {
			e.byName[k] = list
		} else {
			delete(e.byName, k)
		}
		removed = true
	}
	if removed {
		metrics.KubeCachedPods.Set(float64(len(e.byUID)))
		e.gen.Add(1)
	}
	e.mu.Unlock()

	round := e.round.Add(1)
	e.files.Range(func(k, v any) bool {
		if round-v.(*fileEntry).seen.Load() >= 2 {
			e.files.Delete(k)
		}
		return true
	})
}

// listWatch lists and watches through list and watch, reporting each failed request: while
// the apiserver is unreachable the informer retries on its own, mostly without telling its error
// handler, so the requests are where failures show.
func (e *Enricher) listWatch(resource string, client any,
	list func(context.Context, metav1.ListOptions) (runtime.Object, error),
	watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error),
) cache.ListerWatcher {
	r := &apiReporter{log: e.log, now: func() time.Time { return e.now() }, resource: resource, count: metrics.KubeAPIErrors.WithLabelValues(resource)}
	return cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			obj, err := list(ctx, o)
			r.report(ctx, err)
			return obj, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			w, err := watchFn(ctx, o)
			r.report(ctx, err)
			return w, err
		},
	}, client)
}

// streamErrors replaces client-go's default handler of errors that end a list or watch (which
// logs through klog): failed requests are reported by listWatch already; the rest (a watch
// stream ending with an error) matter only when debugging.
func (e *Enricher) streamErrors(r *cache.Reflector, err error) {
	if errors.Is(err, io.EOF) || apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
		return // the watch ended normally, or must start again from a new list
	}
	e.log.Debug("kubernetes API: watch ended with an error; restarting", "reflector", r.TypeDescription(), "err", err)
}

// apiReporter counts the failed requests of one resource and logs at most one per
// errorLogInterval (saying how many it did not log), and once when requests succeed again.
type apiReporter struct {
	log      *slog.Logger
	now      func() time.Time
	resource string
	count    *metrics.Counter

	mu         sync.Mutex
	last       time.Time
	suppressed int
	failing    bool
}

func (r *apiReporter) report(ctx context.Context, err error) {
	if err != nil && ctx.Err() != nil {
		return // shutting down
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		if r.failing {
			r.failing = false
			r.log.Info("kubernetes API answers again", "resource", r.resource)
		}
		return
	}
	r.count.Inc()
	r.failing = true
	now := r.now()
	if !r.last.IsZero() && now.Sub(r.last) < errorLogInterval {
		r.suppressed++
		return
	}
	r.log.Warn("kubernetes API: list or watch failed; retrying, records carry what their paths tell until it answers",
		"resource", r.resource, "err", err, "not_logged_since_last", r.suppressed)
	r.last, r.suppressed = now, 0
}
