// Package agent wires skiff's pipeline: tail inputs → parser → enrich → route → outputs, and the
// acknowledgement path back from the outputs to the positions store.
//
// The record's way: a tail reader reads a Chunk of records from one file and calls the agent's
// route function, which puts each record into one Batch per output its tag matches and Sends the
// batches (blocking while an output's queue is full: backpressure). The acknowledgement's way: an
// output calls Batch.Done, which releases the records' Acks; when a chunk's Ack is complete the
// file's positions tracker commits the offset after it, never past an earlier incomplete chunk.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skiff-logs/skiff/agent/config"
	"github.com/skiff-logs/skiff/agent/event"
	"github.com/skiff-logs/skiff/agent/kube"
	"github.com/skiff-logs/skiff/agent/metrics"
	"github.com/skiff-logs/skiff/agent/positions"
	"github.com/skiff-logs/skiff/agent/route"
	"github.com/skiff-logs/skiff/agent/tail"
	"github.com/skiff-logs/skiff/agent/webhook"
)

// Plugins are the concrete parsers and outputs, plugged in by cmd so that agent depends on no
// parser or output package.
type Plugins struct {
	// NewParser picks the parser for a container log file from its first line.
	NewParser tail.NewParser
	// NewOutput builds the output described by o. dataDir is the agent's data_dir; log is the
	// agent's logger as is: outputs name themselves in their logs (an "output" attribute).
	NewOutput func(o config.Output, dataDir string, log *slog.Logger) (Output, error)
	// NewAuditParser creates a parser of audit.k8s.io/v1 Event lines (parsers/audit) whose
	// events are cut to maxEventBytes (0: the parser's default). Needed by audit_webhook inputs.
	NewAuditParser func(maxEventBytes int) tail.Parser
}

// Agent is one running skiff. Create it with New, then call Run once.
type Agent struct {
	cfg     *config.Config
	log     *slog.Logger
	store   *positions.Store
	tailers []*tail.Tailer
	outputs []Output
	names   []string
	routes  *route.Table
	// rules are the rewrite_tag and records rules; nil when there are none.
	rules  *route.Rules
	states sync.Pool // *routeState, one per routing goroutine at a time

	// webhooks are the audit_webhook inputs (webhook.go), webhookNames their names.
	webhooks     []*webhook.Input
	webhookNames []string

	noRoute *metrics.Counter
	ready   atomic.Bool

	// kube enriches records with Kubernetes metadata (enrich.go); nil when disabled.
	kube        *kube.Enricher
	excluded    *metrics.Counter
	jsonSkipped *metrics.Counter
	// Addr is set once the HTTP server listens (useful when the config says ":0").
	addr atomic.Value
}

// New builds the agent: opens the positions store (a corrupt one is moved aside and reported),
// creates outputs and tailers. It starts no goroutines.
func New(cfg *config.Config, p Plugins, log *slog.Logger) (*Agent, error) {
	a := &Agent{cfg: cfg, log: log, noRoute: metrics.RouteDropped.WithLabelValues("no_output"),
		excluded: metrics.RouteDropped.WithLabelValues("excluded"), jsonSkipped: metrics.KubeJSONSkipped}
	if cfg.Kubernetes.Enabled {
		e, err := newEnricher(cfg.Kubernetes, log)
		if err != nil {
			return nil, err
		}
		a.kube = e
	}
	store, err := positions.Open(filepath.Join(cfg.DataDir, "positions.json"), log)
	if err != nil {
		return nil, err
	}
	a.store = store
	var budget *tail.Budget // shared by every tailer: bounds chunks read and not yet acknowledged
	if limit := MemoryLimit(cfg); limit > 0 {
		if limit != cfg.MemoryLimit {
			log.Warn("memory_limit raised to hold twice the outputs' request bodies (workers × flush_bytes), so that requests fill without waiting for flush_interval",
				"memory_limit", int64(cfg.MemoryLimit), "used", int64(limit))
		}
		budget = tail.NewBudget(int64(limit))
	}
	var matches [][]string
	for i, oc := range cfg.Outputs {
		o, err := p.NewOutput(oc, cfg.DataDir, log)
		if err != nil {
			return nil, fmt.Errorf("outputs[%d] (%s): %w", i, oc.Name, err)
		}
		a.outputs = append(a.outputs, o)
		a.names = append(a.names, oc.Name)
		matches = append(matches, oc.Match)
	}
	if a.routes, err = route.New(matches); err != nil {
		return nil, err
	}
	if a.rules, err = route.NewRules(cfg.RouteRules()); err != nil {
		return nil, err
	}
	for i, ic := range cfg.Inputs {
		if ic.Type == config.InputAuditWebhook {
			w, err := a.newWebhook(ic, p)
			if err != nil {
				return nil, fmt.Errorf("inputs[%d] (%s): %w", i, ic.Name, err)
			}
			a.webhooks, a.webhookNames = append(a.webhooks, w), append(a.webhookNames, ic.Name)
			continue
		}
		newParser, describe := p.NewParser, kube.Describe
		if ic.Type == config.InputAudit {
			if newParser, describe, err = auditInput(ic, p); err != nil {
				return nil, fmt.Errorf("inputs[%d] (%s): %w", i, ic.Name, err)
			}
		}
		t, err := tail.New(tail.Config{
			Input:        ic.Name,
			Paths:        ic.Paths,
			Exclude:      ic.Exclude,
			StartAtEnd:   ic.StartAt == "end",
			MaxLineBytes: int(ic.MaxLineBytes),
			ScanInterval: ic.ScanInterval.D(),
			NewParser:    newParser,
			Describe:     describe,
			Positions:    store,
			Budget:       budget,
			Logger:       log.With("input", ic.Name),
		})
		if err != nil {
			return nil, fmt.Errorf("inputs[%d] (%s): %w", i, ic.Name, err)
		}
		a.tailers = append(a.tailers, t)
	}
	a.states.New = func() any {
		st := &routeState{cache: a.routes.NewCache(), batches: make([]*event.Batch, len(a.outputs))}
		if a.rules != nil {
			st.rules = a.rules.NewState()
		}
		return st
	}
	return a, nil
}

// Addr returns the HTTP server's address once it listens, or "".
func (a *Agent) Addr() string {
	s, _ := a.addr.Load().(string)
	return s
}

// Run runs the pipeline until ctx ends, then shuts down in order: stop the tailers (a chunk
// being routed finishes or fails), close the outputs with the configured shutdown timeout
// (they deliver what they hold, or finish it as failed), and write the final positions. It
// returns nil after a clean shutdown.
func (a *Agent) Run(ctx context.Context) error {
	outCtx, cancelOutputs := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelOutputs()
	storeCtx, cancelStore := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelStore()

	var storeDone = make(chan struct{})
	go func() {
		defer close(storeDone)
		a.store.Run(storeCtx, a.cfg.PositionsInterval.D())
	}()

	var outWG sync.WaitGroup
	for i, o := range a.outputs {
		outWG.Add(1)
		go func() {
			defer outWG.Done()
			if err := o.Run(outCtx); err != nil && !errors.Is(err, context.Canceled) {
				a.log.Error("output stopped", "output", a.names[i], "err", err)
			}
		}()
	}

	err := a.listenWebhooks()
	var srv *http.Server
	if err == nil {
		srv, err = a.serveHTTP()
	}
	if err != nil {
		cancelOutputs()
		outWG.Wait()
		return err
	}

	stopKube := a.startKube(ctx)
	var tailWG sync.WaitGroup
	for i, t := range a.tailers {
		tailWG.Add(1)
		go func() {
			defer tailWG.Done()
			if err := t.Run(ctx, a.route); err != nil && !errors.Is(err, context.Canceled) {
				a.log.Error("input stopped", "input", a.cfg.Inputs[i].Name, "err", err)
			}
		}()
	}
	a.startWebhooks(ctx, &tailWG)
	a.ready.Store(true)
	a.log.Info("skiff running", "inputs", len(a.tailers)+len(a.webhooks), "outputs", len(a.outputs), "data_dir", a.cfg.DataDir)

	<-ctx.Done()
	a.ready.Store(false)
	a.log.Info("shutting down: stopping inputs")
	tailWG.Wait()
	stopKube()

	a.log.Info("shutting down: draining outputs", "timeout", a.cfg.ShutdownTimeout.D())
	closeCtx, cancelClose := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.ShutdownTimeout.D())
	var closeWG sync.WaitGroup
	for i, o := range a.outputs {
		closeWG.Add(1)
		go func() {
			defer closeWG.Done()
			if err := o.Close(closeCtx); err != nil {
				a.log.Warn("output did not drain", "output", a.names[i], "err", err)
			}
		}()
	}
	closeWG.Wait()
	cancelClose()
	cancelOutputs()
	outWG.Wait()

	if srv != nil {
		shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		_ = srv.Shutdown(shutCtx)
		cancel()
	}
	cancelStore()
	<-storeDone
	if err := a.store.Flush(); err != nil {
		return fmt.Errorf("final positions write: %w", err)
	}
	a.log.Info("skiff stopped")
	return nil
}

// routeState is the per-goroutine scratch of route.
type routeState struct {
	cache   *route.Cache
	batches []*event.Batch
	rules   *route.State // nil without rules
}

// route enriches the records of one chunk with Kubernetes metadata (enrich.go: records of
// excluded pods are dropped, which acknowledges them like records no output matches), applies
// the rewrite_tag and records rules (once per record, see route.Rules), and sends them to the
// outputs their tags match. It is the tail readers' handle function and runs on
// their goroutines. It returns only after every batch was taken by
// its output, or with ctx's error after finishing the untaken batches as failed.
func (a *Agent) route(ctx context.Context, c *event.Chunk) error {
	st := a.states.Get().(*routeState)
	defer a.states.Put(st)
	dropped, excluded := 0, 0
	ks := kubeStep{a: a}
	for i := range c.Records {
		r := &c.Records[i]
		if a.kube != nil && ks.drop(r) {
			excluded++
			continue
		}
		if st.rules != nil { // after enrichment, so rules see kubernetes.* from the API
			st.rules.Apply(r)
		}
		outs := st.cache.Lookup(r.Tag)
		if len(outs) == 0 {
			dropped++
			continue
		}
		for _, o := range outs {
			b := st.batches[o]
			if b == nil {
				b = &event.Batch{Records: make([]*event.Record, 0, len(c.Records)-i)}
				st.batches[o] = b
			}
			b.Add(r)
		}
	}
	if dropped > 0 {
		a.noRoute.Add(float64(dropped))
	}
	if excluded > 0 {
		a.excluded.Add(float64(excluded))
	}
	var err error
	for o, b := range st.batches {
		if b == nil {
			continue
		}
		st.batches[o] = nil
		if err != nil {
			b.Done(event.Failed)
			continue
		}
		if err = a.outputs[o].Send(ctx, b); err != nil {
			b.Done(event.Failed)
		}
	}
	return err
}

func (a *Agent) serveHTTP() (*http.Server, error) {
	if a.cfg.HTTP.Listen == "" {
		return nil, nil
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics.Registry)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !a.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	ln, err := net.Listen("tcp", a.cfg.HTTP.Listen)
	if err != nil {
		return nil, fmt.Errorf("http.listen: %w", err)
	}
	a.addr.Store(ln.Addr().String())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("http server stopped", "err", err)
		}
	}()
	return srv, nil
}
