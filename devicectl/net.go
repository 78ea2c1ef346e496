package devicectl

import (
	"net"

	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
)

// UDPBuffer is the socket buffer asked for on each ICE socket. With the
// kernel's default (about 200 KiB) a burst of chunks overflows the receive
// queue, and a lost packet before SCTP has an RTT sample waits out the
// 1 s initial retransmission timeout. The kernel caps it at rmem_max.
const UDPBuffer = 4 << 20

// bufferedNet is the standard network with larger UDP socket buffers.
type bufferedNet struct{ *stdnet.Net }

// NewNet returns the network the link's ICE agent uses.
func NewNet() (transport.Net, error) {
	n, err := stdnet.NewNet()
	if err != nil {
		return nil, err
	}
	return bufferedNet{n}, nil
}

func (n bufferedNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, laddr)
	if err == nil {
		grow(c)
	}
	return c, err
}

func (n bufferedNet) ListenPacket(network, address string) (net.PacketConn, error) {
	c, err := n.Net.ListenPacket(network, address)
	if err == nil {
		grow(c)
	}
	return c, err
}

func grow(c any) {
	if uc, ok := c.(*net.UDPConn); ok {
		_ = uc.SetReadBuffer(UDPBuffer)
		_ = uc.SetWriteBuffer(UDPBuffer)
	}
}
