package agent

import (
	"context"
	"errors"
	"sync"

	"github.com/skiff-logs/skiff/agent/config"
	"github.com/skiff-logs/skiff/agent/tail"
	"github.com/skiff-logs/skiff/agent/webhook"
)

// newWebhook builds the audit_webhook input described by ic; its spool is
// <data_dir>/webhook/<name>.
func (a *Agent) newWebhook(ic config.Input, p Plugins) (*webhook.Input, error) {
	if p.NewAuditParser == nil {
		return nil, errors.New("no audit parser plugged in (Plugins.NewAuditParser)")
	}
	newParser := p.NewAuditParser
	w := ic.WebhookInput
	return webhook.New(webhook.Config{
		Name:           ic.Name,
		Listen:         w.Listen,
		URLPath:        w.URLPath,
		TLSCertFile:    w.TLSCertFile,
		TLSKeyFile:     w.TLSKeyFile,
		TLSDisable:     w.TLSDisable,
		ClientCAFile:   w.ClientCAFile,
		TokenFile:      w.TokenFile,
		AuthDisable:    w.AuthDisable,
		MaxBodyBytes:   int64(w.MaxBodyBytes),
		SpoolDir:       a.cfg.WebhookSpoolDir(ic.Name),
		SpoolFileBytes: int64(w.SpoolFileBytes),
		MaxSpoolBytes:  int64(w.MaxSpoolBytes),
		MaxEventBytes:  int(ic.MaxEventBytes),
		Tag:            ic.Tag,
		NewParser:      func(_ []byte, maxBytes int) tail.Parser { return newParser(maxBytes) },
		Positions:      a.store,
		Logger:         a.log.With("input", ic.Name),
	})
}

// listenWebhooks binds the webhook inputs' addresses, so that a port in use fails Run at once.
func (a *Agent) listenWebhooks() error {
	for _, w := range a.webhooks {
		if err := w.Listen(); err != nil {
			return err
		}
	}
	return nil
}

// startWebhooks runs the webhook inputs until ctx ends, counted in wg like the tailers.
func (a *Agent) startWebhooks(ctx context.Context, wg *sync.WaitGroup) {
	for _, w := range a.webhooks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.Run(ctx, a.route); err != nil && !errors.Is(err, context.Canceled) {
				a.log.Error("input stopped", "err", err)
			}
		}()
	}
}

// InputAddr returns the address the audit_webhook input named name listens on, once Run has
// started it ("" before, or for another input).
func (a *Agent) InputAddr(name string) string {
	for i, w := range a.webhooks {
		if a.webhookNames[i] == name {
			return w.Addr()
		}
	}
	return ""
}
