package elasticsearch

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/skiff-logs/skiff/agent/event"
)

// benchRecords are typical container log records: a ~120-byte message, Kubernetes facts from the
// path, no extra fields.
func benchRecords(n int) []event.Record {
	src := &event.Source{
		Path: "/var/log/pods/shop_web-7d4b9c6f5-x2x9z_0b6c4f5e-1d2a-4c3b-9e8f-7a6b5c4d3e2f/web/0.log",
		Tag:  "kube.shop.web-7d4b9c6f5-x2x9z.web", IDPrefix: "fd01-8812345-9a3f2c1b",
		Namespace: "shop", PodName: "web-7d4b9c6f5-x2x9z", PodUID: "0b6c4f5e-1d2a-4c3b-9e8f-7a6b5c4d3e2f",
		Container: "web", ContainerID: "containerd://4f1e2d3c4b5a69788796a5b4c3d2e1f0",
	}
	recs := make([]event.Record, n)
	for i := range recs {
		recs[i] = event.Record{
			Time:    testTime.Add(time.Duration(i) * time.Microsecond),
			Stream:  event.StreamStdout,
			Message: fmt.Appendf(nil, `10.0.%d.%d - - "GET /api/v1/items/%d HTTP/1.1" 200 512 "-" "Mozilla/5.0 (X11; Linux x86_64)" rt=0.004`, i%256, i%200, i),
			Tag:     src.Tag, Source: src, Offset: int64(i) * 180,
		}
	}
	return recs
}

// BenchmarkEncodeBulk measures building bulk bodies: action line (index template, id) and
// document per record, into a reused buffer.
func BenchmarkEncodeBulk(b *testing.B) {
	o, err := New(Config{Name: "bench", Hosts: []string{"http://127.0.0.1:1"}, DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	recs := benchRecords(4096)
	body := make([]byte, 0, 8<<20)
	enc := newEncoder(o.index)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if len(body) > 5<<20 {
			body = body[:0]
		}
		body = enc.appendItem(body, &recs[i%len(recs)])
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.SetBytes(int64(len(newEncoder(o.index).appendItem(nil, &recs[0]))))
}

// BenchmarkBlackhole measures the whole output: Send, queue, workers, bulk request over HTTP to
// a server that reads the body and answers {"errors":false}, and the acknowledgements.
func BenchmarkBlackhole(b *testing.B) {
	for _, gz := range []bool{false, true} {
		b.Run(fmt.Sprintf("compression=%v", gz), func(b *testing.B) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.Header().Set("X-Elastic-Product", "Elasticsearch")
				_, _ = io.WriteString(w, `{"errors":false}`)
			}))
			defer srv.Close()
			o, err := New(Config{
				Name: fmt.Sprintf("blackhole-%v", gz), Hosts: []string{srv.URL}, DataDir: b.TempDir(),
				InstallTemplates: boolp(false), Compression: gz, Logger: testLogger(b),
			})
			if err != nil {
				b.Fatal(err)
			}
			run := make(chan error, 1)
			go func() { run <- o.Run(context.Background()) }()

			const batchSize = 512
			recs := benchRecords(batchSize)
			ack := event.NewAck(0, nil)
			for i := range recs {
				recs[i].Ack = ack
			}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for sent := 0; sent < b.N; sent += batchSize {
				batch := &event.Batch{Records: make([]*event.Record, 0, batchSize)}
				for i := range recs {
					if sent+i == b.N {
						break
					}
					batch.Add(&recs[i])
				}
				if err := o.Send(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			cctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			if err := o.Close(cctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if err := <-run; err != nil {
				b.Fatal(err)
			}
			if ack.Pending() != 1 || ack.Failed() {
				b.Fatalf("ack pending %d failed %v", ack.Pending(), ack.Failed())
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
