package main

import (
	"fmt"
	"log/slog"

	"github.com/skiff-logs/skiff/agent"
	"github.com/skiff-logs/skiff/agent/config"
	"github.com/skiff-logs/skiff/outputs/elasticsearch"
	"github.com/skiff-logs/skiff/outputs/file"
)

// newOutput builds the concrete output for one outputs[] entry.
func newOutput(o config.Output, dataDir string, log *slog.Logger) (agent.Output, error) {
	switch o.Type {
	case "elasticsearch":
		return elasticsearch.New(elasticsearch.Config{
			Name:          o.Name,
			Hosts:         o.Hosts,
			Index:         o.Index,
			APIKey:        o.APIKey,
			Username:      o.Username,
			Password:      o.Password,
			CAFile:        o.CAFile,
			TLSInsecure:   o.TLSInsecure,
			FlushBytes:    int(o.FlushBytes),
			FlushInterval: o.FlushInterval.D(),
			Workers:       o.Workers,
			QueueRecords:  o.QueueRecords,
			Compression:   o.Compression,
			FallbackAfter: o.FallbackAfter.D(),
			SpoolMaxBytes: int64(o.SpoolMaxBytes),
			DataDir:       dataDir,
			Logger:        log,
		})
	case "file":
		return file.New(file.Config{
			Name:          o.Name,
			Path:          o.Path,
			FlushInterval: o.FlushInterval.D(),
			FlushBytes:    int(o.FlushBytes),
			QueueRecords:  o.QueueRecords,
			Logger:        log,
		})
	}
	return nil, fmt.Errorf("unknown output type %q", o.Type)
}
