package bench

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"

	"github.com/lowkeyhq/lowkey/devicectl"
)

// rawPair is the baseline: two pion peer connections in this process over
// loopback, one ordered data channel, no Lowkey code on the path.
type rawPair struct {
	a, b   *webrtc.PeerConnection
	da, db *webrtc.DataChannel
}

func rawAPI() *webrtc.API {
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	// The same socket buffers as the link, so the ratio measures Lowkey's
	// own overhead and not a socket setting.
	if n, err := devicectl.NewNet(); err == nil {
		se.SetNet(n)
	}
	return webrtc.NewAPI(webrtc.WithSettingEngine(se))
}

func newRawPair(ctx context.Context) (*rawPair, error) {
	api := rawAPI()
	a, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	b, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		a.Close()
		return nil, err
	}
	p := &rawPair{a: a, b: b}
	neg, id := true, uint16(0)
	if p.da, err = a.CreateDataChannel("raw", &webrtc.DataChannelInit{Negotiated: &neg, ID: &id}); err == nil {
		p.db, err = b.CreateDataChannel("raw", &webrtc.DataChannelInit{Negotiated: &neg, ID: &id})
	}
	if err != nil {
		p.close()
		return nil, err
	}
	opened := make(chan struct{}, 2)
	p.da.OnOpen(func() { opened <- struct{}{} })
	p.db.OnOpen(func() { opened <- struct{}{} })
	if err := exchange(a, b); err != nil {
		p.close()
		return nil, err
	}
	for range 2 {
		select {
		case <-opened:
		case <-ctx.Done():
			p.close()
			return nil, errors.New("raw data channel did not open")
		}
	}
	return p, nil
}

// exchange does offer/answer with complete gathering, no trickle.
func exchange(a, b *webrtc.PeerConnection) error {
	offer, err := a.CreateOffer(nil)
	if err != nil {
		return err
	}
	ga := webrtc.GatheringCompletePromise(a)
	if err := a.SetLocalDescription(offer); err != nil {
		return err
	}
	<-ga
	if err := b.SetRemoteDescription(*a.LocalDescription()); err != nil {
		return err
	}
	ans, err := b.CreateAnswer(nil)
	if err != nil {
		return err
	}
	gb := webrtc.GatheringCompletePromise(b)
	if err := b.SetLocalDescription(ans); err != nil {
		return err
	}
	<-gb
	return a.SetRemoteDescription(*b.LocalDescription())
}

func (p *rawPair) close() {
	p.a.Close()
	p.b.Close()
}

// echoRTT: a sends n bytes, b sends them back.
func (p *rawPair) echoRTT(n, rounds int) ([]time.Duration, error) {
	back := make(chan struct{}, 1)
	p.db.OnMessage(func(m webrtc.DataChannelMessage) { _ = p.db.Send(m.Data) })
	p.da.OnMessage(func(webrtc.DataChannelMessage) { back <- struct{}{} })
	msg := make([]byte, n)
	out := make([]time.Duration, 0, rounds)
	for range rounds {
		t := time.Now()
		if err := p.da.Send(msg); err != nil {
			return nil, err
		}
		select {
		case <-back:
		case <-time.After(5 * time.Second):
			return nil, errors.New("raw echo timed out")
		}
		out = append(out, time.Since(t))
	}
	return out, nil
}

// bulk: a asks, b makes size bytes the way sys.echo does and sends them in
// chunks (1 MiB high water, 512 KiB low, as pion's examples do), a waits
// for the last byte.
func (p *rawPair) bulk(size, chunk int) (time.Duration, error) {
	got := 0
	done := make(chan struct{}, 1)
	low := make(chan struct{}, 1)
	p.db.SetBufferedAmountLowThreshold(512 << 10)
	p.db.OnBufferedAmountLow(func() {
		select {
		case low <- struct{}{}:
		default:
		}
	})
	p.db.OnMessage(func(webrtc.DataChannelMessage) {
		go func() {
			blob := devicectl.EchoBytes(size)
			for off := 0; off < size; off += chunk {
				for p.db.BufferedAmount() >= 1<<20 {
					select {
					case <-low:
					case <-time.After(50 * time.Millisecond):
					}
				}
				_ = p.db.Send(blob[off:min(off+chunk, size)])
			}
		}()
	})
	p.da.OnMessage(func(m webrtc.DataChannelMessage) {
		got += len(m.Data)
		if got >= size {
			done <- struct{}{}
		}
	})
	t := time.Now()
	if err := p.da.Send([]byte{1}); err != nil {
		return 0, err
	}
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		return 0, errors.New("raw bulk timed out")
	}
	return time.Since(t), nil
}
