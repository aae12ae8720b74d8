package report

import (
	"sync"
	"time"
)

// Sampler reads a cumulative count (readings accepted so far, rows committed so far) every
// second from its start, and keeps how much it grew in each second.
type Sampler struct {
	read func() (float64, error)
	stop chan struct{}
	done chan struct{}

	mu        sync.Mutex
	perSecond []float64
	err       error
}

// StartSampler starts sampling read, which returns the count so far.
func StartSampler(read func() (float64, error)) *Sampler {
	return startSampler(read, time.Second)
}

// startSampler samples every period; each value is still the growth in one period.
func startSampler(read func() (float64, error), period time.Duration) *Sampler {
	s := &Sampler{read: read, stop: make(chan struct{}), done: make(chan struct{})}
	first, err := read()
	if err != nil {
		s.err = err
		close(s.done)
		return s
	}
	go s.run(first, period)
	return s
}

func (s *Sampler) run(last float64, period time.Duration) {
	defer close(s.done)
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		v, err := s.read()
		s.mu.Lock()
		if err != nil {
			s.err = err
			s.mu.Unlock()
			return
		}
		s.perSecond = append(s.perSecond, round(v-last))
		s.mu.Unlock()
		last = v
	}
}

// Stop ends the sampling and returns the growth in each whole second sampled (a last,
// partial second is left out), or the first error reading the count.
func (s *Sampler) Stop() ([]float64, error) {
	select {
	case <-s.done:
	default:
		close(s.stop)
		<-s.done
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.perSecond, s.err
}
