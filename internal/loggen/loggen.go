// Package loggen writes container log files the way the kubelet and docker do, for the demo, the
// end-to-end tests and the benchmarks: CRI lines with P/F fragments, docker json-file lines with
// 16 KiB pieces, and the kubelet's /var/log/pods + /var/log/containers layout.
package loggen

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
	"unicode/utf8"
)

// Format is a container log file format.
type Format int

const (
	// CRI is the containerd/CRI-O format: "<RFC3339Nano> <stream> <P|F> <msg>".
	CRI Format = iota
	// Docker is the docker json-file format: {"log":"…\n","stream":"…","time":"…"}.
	Docker
)

// DockerPiece is the size at which docker splits a long line into pieces.
const DockerPiece = 16 * 1024

// Container names one container's log files in the kubelet layout.
type Container struct {
	Namespace, Pod, UID, Name, ID string
}

// PodsPath is /var/log/pods/<ns>_<pod>_<uid>/<container>/0.log under root.
func (c Container) PodsPath(root string) string {
	return filepath.Join(root, "var/log/pods", c.Namespace+"_"+c.Pod+"_"+c.UID, c.Name, "0.log")
}

// ContainersPath is /var/log/containers/<pod>_<ns>_<container>-<id>.log under root.
func (c Container) ContainersPath(root string) string {
	return filepath.Join(root, "var/log/containers", c.Pod+"_"+c.Namespace+"_"+c.Name+"-"+c.ID+".log")
}

// Create makes the container's pods file and the containers symlink to it, as the kubelet does.
func (c Container) Create(root string) (*os.File, error) {
	p := c.PodsPath(root)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	l := c.ContainersPath(root)
	if err := os.MkdirAll(filepath.Dir(l), 0o755); err != nil {
		f.Close()
		return nil, err
	}
	if err := os.Symlink(p, l); err != nil && !os.IsExist(err) {
		f.Close()
		return nil, err
	}
	return f, nil
}

// AppendLine appends the encoded lines of one message to dst: for CRI, one P line per cut (cuts
// are byte positions in msg, ascending, and may split a multi-byte character) and a final F
// line; for docker, 16 KiB pieces (cuts ignored) with "\n" only at the end of the last.
func AppendLine(dst []byte, f Format, t time.Time, stream, msg string, cuts []int) []byte {
	switch f {
	case Docker:
		for start := 0; ; start += DockerPiece {
			end := min(start+DockerPiece, len(msg))
			last := end == len(msg)
			dst = append(dst, `{"log":`...)
			piece := msg[start:end]
			if last {
				piece += "\n"
			}
			dst = appendJSONString(dst, piece)
			dst = append(dst, `,"stream":"`...)
			dst = append(dst, stream...)
			dst = append(dst, `","time":"`...)
			dst = t.UTC().AppendFormat(dst, time.RFC3339Nano)
			dst = append(dst, "\"}\n"...)
			if last {
				return dst
			}
		}
	default:
		prev := 0
		for _, c := range cuts {
			if c <= prev || c >= len(msg) {
				continue
			}
			dst = appendCRI(dst, t, stream, 'P', msg[prev:c])
			prev = c
		}
		return appendCRI(dst, t, stream, 'F', msg[prev:])
	}
}

func appendCRI(dst []byte, t time.Time, stream string, tag byte, msg string) []byte {
	dst = t.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, ' ')
	dst = append(dst, stream...)
	dst = append(dst, ' ', tag, ' ')
	dst = append(dst, msg...)
	return append(dst, '\n')
}

// appendJSONString writes s as a JSON string the way docker's encoder does (escaping <, >, & as
// \u00XX, and invalid UTF-8 as U+FFFD).
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}

// SampleContainers are the demo's pods: two namespaces, both formats.
var SampleContainers = []struct {
	Container
	Format Format
}{
	{Container{"shop", "web-5f7d8c9b4-x2x7q", "0b6d1c3e-58a4-4c1e-9d0b-5b1c2d3e4f50", "nginx", "a1f0c3b2d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d"}, CRI},
	{Container{"shop", "cart-6c9d7f8b5-qp2mz", "1c7e2d4f-69b5-4d2f-8e1c-6c2d3e4f5a61", "cart", "b2e1d4c3e5f6071829304b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e"}, CRI},
	{Container{"payments", "ledger-0", "2d8f3e5a-7ac6-4e3a-9f2d-7d3e4f5a6b72", "ledger", "c3f2e5d4f6071829304a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6f"}, Docker},
}

// WriteSamples writes n messages per sample container under root and returns how many records a
// parser should produce in total. Every tenth message is split into CRI P fragments, one message
// per container is malformed, and some carry non-ASCII text.
func WriteSamples(root string, n int, start time.Time) (records int, err error) {
	for ci, sc := range SampleContainers {
		f, err := sc.Create(root)
		if err != nil {
			return 0, err
		}
		var buf []byte
		for i := 0; i < n; i++ {
			t := start.Add(time.Duration(i)*time.Millisecond + time.Duration(ci)*time.Microsecond)
			stream := "stdout"
			if i%7 == 3 {
				stream = "stderr"
			}
			msg := sampleMessage(sc.Name, i)
			var cuts []int
			if i%10 == 9 {
				cuts = []int{len(msg) / 3, 2 * len(msg) / 3}
			}
			buf = AppendLine(buf, sc.Format, t, stream, msg, cuts)
			records++
			if i == n/2 {
				buf = append(buf, "this line is not in the container log format\n"...)
				records++
			}
		}
		if _, err := f.Write(buf); err != nil {
			f.Close()
			return 0, err
		}
		if err := f.Close(); err != nil {
			return 0, err
		}
	}
	return records, nil
}

func sampleMessage(container string, i int) string {
	switch i % 5 {
	case 0:
		return `10.0.` + strconv.Itoa(i%256) + `.7 - - "GET /api/items/` + strconv.Itoa(i) + ` HTTP/1.1" 200 512 "-" "curl/8.5.0"`
	case 1:
		return fmt.Sprintf(`{"level":"info","msg":"order accepted","order":%d,"container":%q}`, i, container)
	case 2:
		return fmt.Sprintf("pedido %d confirmado — café ☕ para 東京", i)
	case 3:
		return fmt.Sprintf("WARN slow query took %dms: SELECT * FROM items WHERE id = %d", 100+i%900, i)
	default:
		return fmt.Sprintf("line %d of %s with a tab\tand \"quotes\"", i, container)
	}
}
