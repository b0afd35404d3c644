package metrics

import (
	"sync"
	"sync/atomic"
)

// PerCPU spreads writes that every request makes over a fixed set of
// shards, so that requests served on different cores write to different
// memory: one shared atomic counter, written from every core, costs each
// write a cache-line transfer, which is what keeps a server from scaling.
//
// Get returns the shard of the calling goroutine's P (its processor) in the
// usual case: the shards sit in a sync.Pool, whose fast path is P-local. A
// shard is never lost: the pool only hands out pointers into the fixed set
// (when the pool is empty, after a garbage collection, it hands out the
// next one round-robin), so a reader sums All of them. Two goroutines may
// use the same shard at once: everything in it is atomic.
type PerCPU[T any] struct {
	all  []*T
	pool sync.Pool
	next atomic.Uint32
}

// NewPerCPU returns n shards (at least 1), each a zero T.
func NewPerCPU[T any](n int) *PerCPU[T] {
	p := &PerCPU[T]{all: make([]*T, max(n, 1))}
	for i := range p.all {
		p.all[i] = new(T)
	}
	p.pool.New = func() any { return p.all[int(p.next.Add(1))%len(p.all)] }
	return p
}

// Get returns a shard, usually the calling P's; the only one, with one.
func (p *PerCPU[T]) Get() *T {
	if len(p.all) == 1 {
		return p.all[0]
	}
	s := p.pool.Get().(*T)
	p.pool.Put(s)
	return s
}

// All returns every shard, for a reader to sum.
func (p *PerCPU[T]) All() []*T { return p.all }
