package e2e

import (
	"bytes"
	"context"
	"image"
	"image/draw"
	"image/jpeg"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/lowkeyhq/lowkey/devicectl"
	"github.com/lowkeyhq/lowkey/hub"
	"github.com/lowkeyhq/lowkey/internal/admin"
	"github.com/lowkeyhq/lowkey/internal/testenv"
)

// liveViewer watches a box's live stream through its admin socket, as the
// web app would, keeping the picture the updates make.
type liveViewer struct {
	ws      *websocket.Conn
	updates atomic.Int64
	bytes   atomic.Int64
	pic     atomic.Pointer[image.RGBA]
	pointer atomic.Pointer[image.Point]
	done    chan struct{}
	err     error
}

func watch(t *testing.T, data, path string) *liveViewer {
	t.Helper()
	d := websocket.Dialer{NetDialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", hub.SocketPath(data))
	}}
	ws, _, err := d.Dial("ws://box"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	v := &liveViewer{ws: ws, done: make(chan struct{})}
	t.Cleanup(func() { ws.Close(); <-v.done })
	go func() {
		defer close(v.done)
		var pic *image.RGBA
		for {
			_, m, err := ws.ReadMessage()
			if err == nil {
				var u *devicectl.LiveUpdate
				if u, err = devicectl.ParseLiveUpdate(m); err == nil {
					pic, err = u.Apply(pic)
					if u.Pointer != nil {
						v.pointer.Store(u.Pointer)
					}
				}
			}
			if err != nil {
				v.err = err
				return
			}
			// The test reads a copy; the next update draws on pic.
			shown := image.NewRGBA(pic.Rect)
			copy(shown.Pix, pic.Pix)
			v.pic.Store(shown)
			v.updates.Add(1)
			v.bytes.Add(int64(len(m)))
		}
	}()
	return v
}

// The live screen on a slow path (the laptop's side of the link shaped to
// 2 Mbit/s, as a café's uplink) while the whole screen changes all the
// time: the computer skips frames rather than queue them, the viewer
// still gets updates, calls on the same link answer, the pointer moves,
// and once the screen is still the viewer's picture is the screen.
func TestLiveScreenOnASlowPath(t *testing.T) {
	l := newLAN(t)
	if out, err := exec.Command("ip", "netns", "exec", l.laptop, "tc", "qdisc", "add", "dev", l.lapIf, "root", "tbf", "rate", "2mbit", "burst", "32kb", "latency", "400ms").CombinedOutput(); err != nil {
		t.Fatalf("tc: %v %s", err, out)
	}
	display := testenv.Xvfb(t, 1280, 720)
	paint := testenv.Noise(t, display)
	paint(1)
	data := t.TempDir()
	b := startBox(t, l.box, data, boxIP+":7780", "--no-mdns")
	state := t.TempDir()
	mustRun(t, l.laptop, "lowkey-companion", "pair", "--hub", boxIP+":7780", "--code", b.pairCode(t), "--state", state, "--name", "cafe-laptop")
	id := b.devices(t)[0].ID
	// The person at this computer trusts the box with the screen.
	mustRun(t, l.laptop, "lowkey-companion", "consent", "trust", "--desktop", "--state", state)
	comp := start(t, l.laptop, "lowkey-companion", "run", "--state", state, "--no-mdns", "--headless", "--display", display)
	b.waitOnline(t, id, 30*time.Second)
	sess := b.session(t)
	adm := admin.New(hub.SocketPath(data))
	if err := adm.Do("PUT", "/api/v1/sessions/"+sess+"/devices/"+id+"/access", map[string]bool{"desktop": true}, nil); err != nil {
		t.Fatal(err)
	}
	v := watch(t, data, "/api/v1/sessions/"+sess+"/devices/"+id+"/live?fps=15")

	// Busy: a new picture of noise (about 1.5 MiB as a JPEG at the
	// stream's quality) every 100 ms, for 6 s: ten times what the path
	// carries.
	stop := make(chan struct{})
	painted := make(chan struct{})
	go func() {
		defer close(painted)
		for i := uint64(2); i < 62; i++ {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			paint(i)
		}
	}()
	time.Sleep(time.Second)
	before := v.updates.Load()
	// A call on the same link answers while the stream runs.
	if err := b.echo(t, sess, id, 16); err != nil {
		t.Fatalf("a call during the live stream: %v", err)
	}
	// The pointer moves.
	if err := adm.Do("POST", "/api/v1/sessions/"+sess+"/devices/"+id+"/actions", map[string]any{"action": "screen.move", "args": map[string]int{"x": 640, "y": 360}}, nil); err != nil {
		t.Fatal(err)
	}
	<-painted
	close(stop)
	if p := v.pointer.Load(); p == nil || *p != (image.Point{X: 640, Y: 360}) {
		t.Errorf("the viewer's pointer is at %v, not 640,360", p)
	}
	if v.updates.Load() <= before {
		t.Fatalf("the viewer got no update while the screen was busy (%d in all): %v", v.updates.Load(), v.err)
	}
	t.Logf("while busy: %d updates, %.1f Mbit/s received", v.updates.Load(), float64(v.bytes.Load())*8/1e6/7)

	// Still: the viewer's picture becomes the screen's, as close as one
	// whole JPEG of it at the stream's quality (70) is.
	final := testenv.Capture(t, display)
	var whole bytes.Buffer
	if err := jpeg.Encode(&whole, final, &jpeg.Options{Quality: 70}); err != nil {
		t.Fatal(err)
	}
	decoded, _ := jpeg.Decode(&whole)
	ref := image.NewRGBA(final.Rect)
	draw.Draw(ref, ref.Rect, decoded, image.Point{}, draw.Src)
	limit := meanDiff(ref, final) + 1
	deadline := time.Now().Add(60 * time.Second)
	for {
		if pic := v.pic.Load(); pic != nil && meanDiff(pic, final) < limit {
			break
		}
		if time.Now().After(deadline) {
			pic := v.pic.Load()
			t.Fatalf("the viewer's picture is %.1f off the still screen, a whole JPEG %.1f (err %v)", meanDiff(pic, final), limit-1, v.err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	v.ws.Close()
	// The computer skipped frames the path could not carry rather than
	// queue them.
	m := regexp.MustCompile(`live screen off.*frames=(\d+) skipped=(\d+)`).FindStringSubmatch(comp.waitFor(`live screen off.*skipped=\d+`, 10*time.Second))
	sent, skipped := atoi(m[1]), atoi(m[2])
	if skipped == 0 {
		t.Fatalf("the computer sent %d frames and skipped none on a 2 Mbit/s path", sent)
	}
	t.Logf("the computer sent %d updates and skipped %d frames", sent, skipped)
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// meanDiff is the mean difference per channel of two pictures (255 when
// there is none to compare).
func meanDiff(a, b *image.RGBA) float64 {
	if a == nil || b == nil || a.Rect != b.Rect {
		return 255
	}
	sum := 0
	for y := range a.Rect.Dy() {
		ra, rb := a.Pix[y*a.Stride:y*a.Stride+a.Rect.Dx()*4], b.Pix[y*b.Stride:y*b.Stride+b.Rect.Dx()*4]
		for i := range ra {
			if i%4 == 3 {
				continue
			}
			d := int(ra[i]) - int(rb[i])
			sum += max(d, -d)
		}
	}
	return float64(sum) / float64(a.Rect.Dx()*a.Rect.Dy()*3)
}
