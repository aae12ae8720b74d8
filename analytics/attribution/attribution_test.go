package attribution

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

func TestShare(t *testing.T) {
	for _, tc := range []struct {
		name          string
		ac, dc, total int64
		want          int64
	}{
		{"one vehicle takes the whole AC", 18_000_000, 15_000_000, 15_000_000, 18_000_000},
		{"two equal vehicles halve it", 1_000_001, 5, 10, 500_001}, // 500,000.5 rounds away from zero
		{"a third", 1_000_000, 1, 3, 333_333},
		{"two thirds", 1_000_000, 2, 3, 666_667},
		{"no DC at all", 1_000_000, 0, 0, 0},
		{"a vehicle without DC in a shared hour", 1_000_000, 0, 7, 0},
		{"no AC", 0, 3, 7, 0},
		{"the largest values do not overflow", math.MaxInt64 / 2, math.MaxInt64/2 - 1, math.MaxInt64 / 2, math.MaxInt64/2 - 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Share(tc.ac, tc.dc, tc.total); got != tc.want {
				t.Errorf("Share(%d, %d, %d) = %d, want %d", tc.ac, tc.dc, tc.total, got, tc.want)
			}
		})
	}
}

func TestShareIsTheRoundedExactQuotient(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100_000 {
		total := rng.Int64N(1<<40) + 1
		dc := rng.Int64N(total + 1)
		ac := rng.Int64N(1 << 40)
		// round(ac·dc/total) half away from zero, in big integers.
		num := new(big.Int).Mul(big.NewInt(ac), big.NewInt(dc))
		num.Mul(num, big.NewInt(2)).Add(num, big.NewInt(total))
		want := num.Quo(num, big.NewInt(2*total)).Int64()
		if ac == 0 || dc == 0 {
			want = 0
		}
		if got := Share(ac, dc, total); got != want {
			t.Fatalf("Share(%d, %d, %d) = %d, want %d", ac, dc, total, got, want)
		}
	}
}

func TestEqual(t *testing.T) {
	for _, tc := range []struct {
		ac   int64
		n    int
		want int64
	}{{900, 3, 300}, {1000, 3, 333}, {1001, 2, 501}, {1000, 0, 1000}, {1000, 1, 1000}, {0, 4, 0}} {
		if got := Equal(tc.ac, tc.n); got != tc.want {
			t.Errorf("Equal(%d, %d) = %d, want %d", tc.ac, tc.n, got, tc.want)
		}
	}
}
