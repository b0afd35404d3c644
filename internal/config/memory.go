package config

// What lameduck holds in memory, per unit, measured on linux/amd64 with Go
// 1.26 (make bench's hostile mix; idem's TestEntryBytes) and rounded up. The
// worst case at a configuration is their sum at its limits; the README's
// memory budget table prints it for the defaults.
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
)

// MemoryPart is one component of the memory worst case.
type MemoryPart struct {
	Name  string
	Bytes int64
	Why   string // how the bound comes about
}

// MemoryWorstCase returns the most memory each component can hold at c,
// whatever clients do: every connection open (LAMEDUCK_MAX_CONNS), each in
// the middle of its largest header block and reading a body, the
// Idempotency-Key store full, the queue full.
func (c Config) MemoryWorstCase() []MemoryPart {
	perConn := int64(ConnBytes + bodyBufferBytes + headerCopies*(c.MaxHeaderBytes+headerSlack))
	return []MemoryPart{
		{"process at rest", BaseBytes, "runtime, idle heap, metrics, resident binary"},
		{"connections", int64(c.MaxConns) * perConn,
			"LAMEDUCK_MAX_CONNS × (connection + body buffer + 2 × (LAMEDUCK_MAX_HEADER_BYTES + 4 KiB))"},
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
