package config

// What lameduck holds in memory, per unit, measured on linux/amd64 with Go
// 1.26 and 1.27 (make bench's hostile mixes; idem's TestEntryBytes) and
// rounded up. The worst case at a configuration is their sum at its limits;
// the README's memory budget table prints it for the defaults.
const (
	// BaseBytes is the process with no client: the runtime, the heap of an
	// idle server, the metrics registry and the binary's resident text.
	BaseBytes = 12 << 20
	// ConnBytes is one open connection between requests: its goroutine's
	// stack, the server's conn state and its read and write buffers.
	ConnBytes = 20 << 10
	// bodyBufferBytes is the buffer one request's body is read through.
	bodyBufferBytes = 8 << 10
	// headerSlack is what net/http reads beyond LAMEDUCK_MAX_HEADER_BYTES
	// before it answers 431.
	headerSlack = 4 << 10
	// headerCopies is how many times a header block is held while it is
	// parsed: the bytes read, then the strings and the map made of them.
	headerCopies = 2
	// JobBytes is one queued job: its struct, its id and the channel slot.
	JobBytes = 160

	// H2ConnBytes is one HTTP/2 (h2c) connection between streams: its two
	// goroutines, the server's connection state and HPACK tables (measured
	// 27.6 KiB resident each, 500 idle h2c connections).
	H2ConnBytes = 28 << 10
	// H2FrameBytes is the largest frame an HTTP/2 connection reads
	// (SETTINGS_MAX_FRAME_SIZE, the protocol minimum): its read buffer.
	H2FrameBytes = 16 << 10
	// H2StreamBuffer is the request body one HTTP/2 stream buffers at most
	// (its flow-control window); a connection buffers at most 64 KiB.
	H2StreamBuffer = 16 << 10
	// RequestBytes is one request inside a handler beyond its header block
	// and body buffer: the handler's goroutine, the request and the response
	// state (measured 11.9 KiB of Go heap and stack per stream, 5,000
	// streams of GET /hello?delay=4s held on 50 h2c connections).
	RequestBytes = 16 << 10
)

// MemoryPart is one component of the memory worst case.
type MemoryPart struct {
	Name  string
	Bytes int64
	Why   string // how the bound comes about
}

// MemoryWorstCase returns the most memory each component can hold at c,
// whatever clients do: every connection open (LAMEDUCK_MAX_CONNS), each in
// the middle of its largest header block, as HTTP/1.1 or HTTP/2, whichever
// costs more; LAMEDUCK_MAX_REQUESTS requests (HTTP/2: streams) in handlers,
// each with its largest header block and a full body buffer; the
// Idempotency-Key store full, the queue full.
func (c Config) MemoryWorstCase() []MemoryPart {
	header := int64(c.MaxHeaderBytes + headerSlack)
	h1 := ConnBytes + bodyBufferBytes + headerCopies*header
	// HTTP/2: one header block decoded at a time (its strings then belong to
	// the stream; the bytes read are the second copy).
	h2 := H2ConnBytes + H2FrameBytes + header
	perRequest := RequestBytes + header + H2StreamBuffer
	return []MemoryPart{
		{"process at rest", BaseBytes, "runtime, idle heap, metrics, resident binary"},
		{"connections", int64(c.MaxConns) * max(h1, h2),
			"LAMEDUCK_MAX_CONNS × the larger of HTTP/1.1 (connection + body buffer + 2 × (LAMEDUCK_MAX_HEADER_BYTES + 4 KiB)) and HTTP/2 (connection + 16 KiB frame + LAMEDUCK_MAX_HEADER_BYTES + 4 KiB)"},
		{"requests in handlers", int64(c.MaxRequests) * perRequest,
			"LAMEDUCK_MAX_REQUESTS × (handler and request 16 KiB + LAMEDUCK_MAX_HEADER_BYTES + 4 KiB + HTTP/2 stream buffer 16 KiB)"},
		{"Idempotency-Keys", c.IdempotencyMaxBytes, "LAMEDUCK_IDEMPOTENCY_MAX_BYTES, bookkeeping included"},
		{"job queue", int64(c.QueueSize) * JobBytes, "LAMEDUCK_QUEUE_SIZE × one queued job"},
	}
}

// MemoryTotal is the sum of parts.
func MemoryTotal(parts []MemoryPart) int64 {
	var n int64
	for _, p := range parts {
		n += p.Bytes
	}
	return n
}
