package backoff

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestBackoffGrowthAndCap(t *testing.T) {
	const s = time.Second
	tests := []struct {
		name string
		b    Backoff
		want []time.Duration
	}{
		{name: "default policy without jitter", b: Backoff{Initial: s, Max: 30 * s},
			want: []time.Duration{1 * s, 2 * s, 4 * s, 8 * s, 16 * s, 30 * s, 30 * s, 30 * s}},
		{name: "zero value means 1 s to 30 s", b: Backoff{},
			want: []time.Duration{1 * s, 2 * s, 4 * s, 8 * s, 16 * s, 30 * s, 30 * s}},
		{name: "short", b: Backoff{Initial: 100 * time.Millisecond, Max: time.Second},
			want: []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, s, s}},
		{name: "max below initial is ignored", b: Backoff{Initial: 5 * s, Max: s},
			want: []time.Duration{5 * s, 10 * s, 20 * s, 30 * s, 30 * s}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []time.Duration
			for range tt.want {
				got = append(got, tt.b.Next())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("waits (-want +got):\n%s", diff)
			}
			if n := tt.b.Failures(); n != len(tt.want) {
				t.Errorf("Failures() = %d, want %d", n, len(tt.want))
			}
			tt.b.Reset()
			if d := tt.b.Next(); d != tt.want[0] {
				t.Errorf("after Reset: %v, want %v", d, tt.want[0])
			}
		})
	}
}

func TestBackoffLongOutageStaysCapped(t *testing.T) {
	b := Default()
	for i := range 10000 { // days of 30 s retries: no overflow
		if d := b.Next(); d <= 0 || d > 30*time.Second {
			t.Fatalf("attempt %d: wait %v outside (0, 30s]", i, d)
		}
	}
}

func TestBackoffJitter(t *testing.T) {
	b := Default()
	b.Rand = rand.New(rand.NewPCG(1, 2))
	ceilings := []time.Duration{1, 2, 4, 8, 16, 30, 30, 30, 30, 30}
	distinct := map[time.Duration]bool{}
	for i, c := range ceilings {
		c *= time.Second
		d := b.Next()
		floor := time.Duration(float64(c) * (1 - b.Jitter))
		if d < floor || d > c {
			t.Errorf("attempt %d: wait %v outside [%v, %v]", i, d, floor, c)
		}
		if c == 30*time.Second {
			distinct[d] = true
		}
	}
	if len(distinct) < 2 {
		t.Errorf("capped waits %v are all equal: no jitter", distinct)
	}
}
