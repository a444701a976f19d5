package agent

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"time"

	jsoniter "github.com/json-iterator/go"
	"k8s.io/klog/v2"

	"github.com/skiff-logs/skiff/agent/config"
	"github.com/skiff-logs/skiff/agent/event"
	"github.com/skiff-logs/skiff/agent/kube"
)

// newEnricher builds the Kubernetes metadata enricher from the kubernetes section. It connects
// to nothing yet: a wrong kubeconfig path or a missing in-cluster environment fails here, an
// unreachable apiserver only later, in the Enricher's logs.
func newEnricher(kc config.Kubernetes, log *slog.Logger) (*kube.Enricher, error) {
	rc, err := kube.RESTConfig(kc.Kubeconfig)
	if err != nil {
		return nil, err
	}
	client, meta, err := kube.Clients(rc)
	if err != nil {
		return nil, err
	}
	// client-go logs through klog; send it where skiff's own logs go, in the same format.
	klog.SetSlogLogger(log.With("component", "client-go"))
	e, err := kube.New(client.Pods(""), meta, kube.Config{
		NodeName:        kc.NodeName,
		PodAnnotations:  kc.PodAnnotations,
		NamespaceLabels: *kc.NamespaceLabels,
		Dedot:           *kc.Dedot,
		DeletedPodGrace: kc.DeletedPodGrace.D(),
		Logger:          log.With("component", "kubernetes"),
	})
	if err != nil {
		return nil, fmt.Errorf("kubernetes: %w", err)
	}
	return e, nil
}

// startKube runs the enricher (when enabled) and waits up to kubernetes.sync_timeout for its
// first sync, so that the first records are enriched and excluded pods excluded. It returns the
// function that stops the enricher, to be called after the tailers stopped.
func (a *Agent) startKube(ctx context.Context) (stop func()) {
	if a.kube == nil {
		return func() {}
	}
	kctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := a.kube.Run(kctx); err != nil {
			a.log.Error("kubernetes metadata stopped", "err", err)
		}
	}()
	start := time.Now()
	wait, cancelWait := context.WithTimeout(ctx, a.cfg.Kubernetes.SyncTimeout.D())
	synced := a.kube.WaitSynced(wait)
	cancelWait()
	if synced {
		a.log.Info("kubernetes metadata synced", "node", a.cfg.Kubernetes.NodeName, "took", time.Since(start).Round(time.Millisecond))
	} else if ctx.Err() == nil {
		a.log.Warn("kubernetes metadata not synced within kubernetes.sync_timeout; tailing anyway, records are enriched once the API answers",
			"sync_timeout", a.cfg.Kubernetes.SyncTimeout.D())
	}
	return func() {
		cancel()
		<-done
	}
}

// kubeStep enriches the records of one chunk: it looks up each file once (a chunk holds the
// records of one file) and applies the answer to every record.
type kubeStep struct {
	a       *Agent
	src     *event.Source
	res     kube.Result
	started bool
}

// drop enriches r and reports whether r is to be dropped (its pod or namespace is excluded).
func (k *kubeStep) drop(r *event.Record) bool {
	if !k.started || r.Source != k.src {
		k.started, k.src = true, r.Source
		k.res = kube.Result{}
		if r.Source != nil {
			k.res = k.a.kube.Lookup(r.Source)
		}
	}
	if k.res.Exclude {
		return true
	}
	r.Kube = k.res.Kube
	if k.res.ParseJSON {
		k.a.parseJSON(r)
	}
	return false
}

// jsonAPI decodes messages of pods annotated skiff.io/parser: json. Numbers stay json.Number so
// that large integers keep every digit.
var jsonAPI = jsoniter.Config{UseNumber: true}.Froze()

// parseJSON puts the JSON object r's message holds under kubernetes.json_key in r.Fields. A
// message that is not a JSON object (a plain line, a stack trace, an array) is left as it is
// and counted; the message itself is never changed.
func (a *Agent) parseJSON(r *event.Record) {
	msg := bytes.TrimLeft(r.Message, " \t")
	if len(msg) == 0 || msg[0] != '{' {
		a.jsonSkipped.Inc()
		return
	}
	var obj map[string]any
	if err := jsonAPI.Unmarshal(msg, &obj); err != nil || obj == nil {
		a.jsonSkipped.Inc()
		return
	}
	if r.Fields == nil {
		r.Fields = make(map[string]any, 1)
	}
	r.Fields[a.cfg.Kubernetes.JSONKey] = obj
}
