package query

import "iter"

// Blocks is a list of values kept in blocks that double in size up to a bound, so that
// appending never copies what it holds: a bulk read of a few hundred thousand rows writes
// each row to memory once instead of again at every doubling of one slice.
type Blocks[T any] struct {
	blocks [][]T
	n      int
}

// Block sizes of Blocks: the first holds 64 values, each next twice the last, up to 8192.
const (
	firstBlock = 64
	maxBlock   = 8192
)

// Append adds v at the end.
func (b *Blocks[T]) Append(v T) {
	k := len(b.blocks)
	if k == 0 || len(b.blocks[k-1]) == cap(b.blocks[k-1]) {
		size := firstBlock
		if k > 0 {
			size = min(2*cap(b.blocks[k-1]), maxBlock)
		}
		b.blocks = append(b.blocks, make([]T, 0, size))
		k++
	}
	b.blocks[k-1] = append(b.blocks[k-1], v)
	b.n++
}

// Len is the number of values.
func (b *Blocks[T]) Len() int { return b.n }

// All yields the values in the order they were appended, with their positions.
func (b *Blocks[T]) All() iter.Seq2[int, T] {
	return func(yield func(int, T) bool) {
		i := 0
		for _, blk := range b.blocks {
			for _, v := range blk {
				if !yield(i, v) {
					return
				}
				i++
			}
		}
	}
}
