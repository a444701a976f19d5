package agent

import (
	"errors"

	"github.com/skiff-logs/skiff/agent/config"
	"github.com/skiff-logs/skiff/agent/event"
	"github.com/skiff-logs/skiff/agent/tail"
)

// auditInput returns the parser factory and the path description of an input of type audit
// (kube-apiserver audit log files): every file's records get the input's tag (default "audit")
// whatever its path, and no Kubernetes facts; events are cut to the input's max_event_bytes.
func auditInput(ic config.Input, p Plugins) (tail.NewParser, func(string) event.Source, error) {
	if p.NewAuditParser == nil {
		return nil, nil, errors.New("no audit parser plugged in (Plugins.NewAuditParser)")
	}
	newParser, maxEvent, tag := p.NewAuditParser, int(ic.MaxEventBytes), ic.Tag
	if tag == "" {
		tag = config.DefaultAuditTag
	}
	return func([]byte, int) tail.Parser { return newParser(maxEvent) },
		func(path string) event.Source { return event.Source{Path: path, Tag: tag} }, nil
}
