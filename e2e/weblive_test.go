package e2e

import (
	"fmt"
	"image"
	"image/color"
	"strings"
	"testing"
	"time"

	"github.com/lowkeyhq/lowkey/internal/testenv"
)

// The live screen in the web app: "Live screen" draws the computer's
// screen on the focus pane's canvas from the updates the box relays, and
// what changes on the screen changes there.
func TestWebAppLiveScreen(t *testing.T) {
	display := testenv.Xvfb(t, 1280, 720)
	testenv.Paint(t, display, image.Rect(0, 0, 1280, 720), color.RGBA{30, 60, 90, 255})
	testenv.Paint(t, display, image.Rect(200, 200, 300, 250), color.RGBA{220, 30, 30, 255})
	b := startBox(t, "", t.TempDir(), "127.0.0.1:0", "--no-mdns")
	setup := b.waitFor(`Create the owner \(this link works once\): (\S+)`, 5*time.Second)
	base := setup[:strings.Index(setup, "/#/")]
	state := t.TempDir()
	mustRun(t, "", "lowkey-companion", "pair", "--hub", b.addr, "--code", b.pairCode(t), "--state", state, "--name", "desk")
	id := b.devices(t)[0].ID
	// The person at this computer trusts the box with the screen.
	mustRun(t, "", "lowkey-companion", "consent", "trust", "--desktop", "--state", state)
	start(t, "", "lowkey-companion", "run", "--state", state, "--no-mdns", "--headless", "--display", display)
	b.waitOnline(t, id, 30*time.Second)
	w := ownerPage(t, openBrowser(t), setup)
	uncaught := w.errors()
	w.size(1280, 800)
	token := strings.TrimSpace(mustRun(t, "", "lowkey", "token", "--data", b.data))
	sid := apiJSON(t, "POST", base+"/api/v1/sessions", token, `{}`, 201)["id"].(string)
	apiJSON(t, "PUT", base+"/api/v1/sessions/"+sid+"/devices/"+id+"/access", token, `{"desktop": true}`, 200)
	if err := w.page.Navigate(base + "/#/c/" + sid); err != nil {
		t.Fatal(err)
	}
	w.drawn()
	w.until(`() => [...document.querySelectorAll(".focus button")].some(b => b.textContent === "Live screen" && !b.disabled)`, 15*time.Second, "Live screen enabled")
	w.clickText(".focus button", "Live screen")
	pixel := func(x, y int) string {
		return fmt.Sprintf(`() => { const c = document.getElementById("focus-live"); if (!c || c.closest(".live").hidden || c.width !== 1280) return null;
			const p = c.getContext("2d").getImageData(%d, %d, 1, 1).data; return [p[0], p[1], p[2]] }`, x, y)
	}
	is := func(x, y int, c color.RGBA) string {
		return fmt.Sprintf(`() => { const p = (%s)(); return !!p && Math.abs(p[0]-%d) < 24 && Math.abs(p[1]-%d) < 24 && Math.abs(p[2]-%d) < 24 }`, pixel(x, y), c.R, c.G, c.B)
	}
	w.until(is(250, 225, color.RGBA{220, 30, 30, 255}), 20*time.Second, "the red box on the live canvas")
	w.until(is(640, 360, color.RGBA{30, 60, 90, 255}), 5*time.Second, "the background on the live canvas")
	w.waitText(`live screen of desk`, 5*time.Second)
	// A change on the screen reaches the canvas.
	testenv.Paint(t, display, image.Rect(800, 400, 900, 500), color.RGBA{40, 200, 60, 255})
	w.until(is(850, 450, color.RGBA{40, 200, 60, 255}), 20*time.Second, "the green box on the live canvas")
	w.until(is(250, 225, color.RGBA{220, 30, 30, 255}), 5*time.Second, "the red box still on the live canvas")
	// The pointer, which the screen's pictures do not show, is over the
	// canvas where it is on the screen.
	apiJSON(t, "POST", base+"/api/v1/sessions/"+sid+"/devices/"+id+"/actions", token, `{"action": "screen.move", "args": {"x": 960, "y": 540}}`, 200)
	w.until(`() => { const p = document.querySelector(".live .pointer"), c = document.getElementById("focus-live");
		if (!p || p.hidden) return false; const a = p.getBoundingClientRect(), b = c.getBoundingClientRect();
		return Math.abs((a.left - b.left) / b.width - 0.75) < 0.02 && Math.abs((a.top - b.top) / b.height - 0.75) < 0.02 }`, 20*time.Second, "the pointer at three quarters of the canvas")
	w.shot("live")
	w.axe("the live screen")
	if errs := uncaught(); len(errs) > 0 {
		t.Fatalf("uncaught page errors: %v", errs)
	}
}
