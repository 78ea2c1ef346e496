package browser_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/lowkeyhq/lowkey/devicectl/browser"
	"github.com/lowkeyhq/lowkey/errcode"
)

// serve answers each path with its HTML, on a loopback port of its own.
func serve(t *testing.T, host string, pages map[string]string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := pages[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, body)
	})}}
	srv.Start()
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return "http://" + host + ":" + port
}

func snap(c call, args any) string {
	c.t.Helper()
	m, _ := c.do("browser.snapshot", args)
	return m["snapshot"].(string)
}

// Frames, same-origin and from another site, and open shadow roots are in
// the snapshot, and their refs act inside them.
func TestSnapshotReadsAndActsInEveryFrame(t *testing.T) {
	// localhost and 127.0.0.1 are different sites: the second frame is
	// cross-origin (and out of process where site isolation is on).
	other := serve(t, "localhost", map[string]string{
		"/consent": `<!doctype html><title>Consent</title><p>Cookies are used.</p>
			<button onclick="this.textContent='Accepted'">Accept all</button>`,
	})
	main := ""
	main = serve(t, "127.0.0.1", map[string]string{
		"/": `<!doctype html><title>Checkout</title><h1>Checkout</h1>
			<iframe src="/card" title="Card form" width="400" height="200"></iframe>
			<iframe src="` + other + `/consent" title="Consent" width="400" height="150"></iframe>
			<div id="host"></div>
			<script>
			const root = document.getElementById("host").attachShadow({ mode: "open" });
			root.innerHTML = '<button onclick="this.textContent=\'Shadow pressed\'">Shadow button</button>';
			</script>`,
		"/card": `<!doctype html><title>Card</title><form onsubmit="event.preventDefault(); document.getElementById('done').textContent='Paid ' + document.getElementById('num').value">
			<label>Card number <input id="num"></label> <button>Pay</button><p id="done"></p></form>`,
	})
	c := call{t, newBrowser(t)}
	c.do("browser.navigate", map[string]string{"url": main})
	s := snap(c, nil)
	for _, want := range []string{`iframe "Card form"`, `textbox "Card number"`, `button "Pay"`, `iframe "Consent"`, `Cookies are used.`, `button "Accept all"`, `button "Shadow button"`} {
		if !strings.Contains(s, want) {
			t.Fatalf("the snapshot lacks %q:\n%s", want, s)
		}
	}
	// Chromium's own role names are ARIA's.
	for _, internal := range []string{"Iframe", "LabelText", "StaticText", "RootWebArea"} {
		if strings.Contains(s, internal) {
			t.Errorf("the snapshot says %q:\n%s", internal, s)
		}
	}
	c.do("browser.type", map[string]string{"ref": refOf(t, s, `textbox "Card number"`), "text": "4242"})
	c.do("browser.click", map[string]string{"ref": refOf(t, s, `button "Pay"`)})
	c.do("browser.click", map[string]string{"ref": refOf(t, s, `button "Accept all"`)})
	c.do("browser.click", map[string]string{"ref": refOf(t, s, `button "Shadow button"`)})
	s = snap(c, nil)
	for _, want := range []string{`Paid 4242`, `button "Accepted"`, `button "Shadow pressed"`} {
		if !strings.Contains(s, want) {
			t.Fatalf("after acting in the frames, the snapshot lacks %q:\n%s", want, s)
		}
	}
	// find looks in every frame too.
	m, _ := c.do("browser.find", map[string]string{"text": "accepted"})
	if m["total"].(float64) != 1 || !strings.Contains(fmt.Sprint(m["matches"]), `iframe "Consent"`) {
		t.Fatalf("find in a frame: %v", m)
	}
}

const blockedPage = `<!doctype html><title>Blocked</title>
<style>
  .wrap { position: relative; width: 200px; height: 40px; margin: 10px; }
  #overlay { position: absolute; inset: 0; background: rgba(0,0,0,.2); }
  .fancy { position: relative; display: inline-block; padding: 4px 30px; }
  .fancy input { position: absolute; left: 4px; top: 4px; margin: 0; }
  .fancy span.box { position: absolute; left: 0; top: 0; width: 24px; height: 24px; background: white; border: 1px solid #333; }
</style>
<p id="status">idle</p>
<div class="wrap"><button id="under" onclick="document.getElementById('status').textContent='under clicked'">Covered</button><div id="overlay" class="veil">veil</div></div>
<button disabled onclick="document.getElementById('status').textContent='disabled clicked'">Disabled</button>
<label class="fancy"><input type="checkbox" id="agree" onchange="document.getElementById('status').textContent='agree ' + this.checked"><span class="box"></span>I agree</label>
<button id="search" onclick="document.getElementById('status').textContent='searched'" style="padding:8px"><span style="display:inline-block;width:24px;height:24px;background:#888"></span></button>
<div onclick="document.getElementById('status').textContent='menu opened'" style="cursor:pointer;display:inline-block;padding:6px">Open the menu</div>
<p style="height:5000px">A long page.</p>`

// As reported: clicks that cannot happen hung 30 s and ended "the
// computer did not answer". Now they fail at once with what blocked them,
// a covered checkbox is reached through its label, a button whose icon is
// under its centre is clicked, and a clickable box without a role has a ref.
func TestBlockedActionsSayWhyAtOnce(t *testing.T) {
	url := serve(t, "127.0.0.1", map[string]string{"/": blockedPage})
	c := call{t, newBrowser(t)}
	c.do("browser.navigate", map[string]string{"url": url})
	s := snap(c, nil)
	status := func() string { return pageText(c) }
	for _, tc := range []struct {
		action, line, why string
	}{
		{"browser.click", `button "Covered"`, `covered by <div id="overlay" class="veil"> "veil"`},
		{"browser.hover", `button "Covered"`, `covered by <div id="overlay"`},
		{"browser.click", `button "Disabled"`, `disabled`},
	} {
		start := time.Now()
		_, err := c.try(tc.action, map[string]string{"ref": refOf(t, s, tc.line)})
		var e *errcode.Error
		if !errors.As(err, &e) || e.Code != errcode.NotActionable || !strings.Contains(e.Message, tc.why) {
			t.Fatalf("%s on %s: %v, want it to say %q", tc.action, tc.line, err, tc.why)
		}
		t.Logf("%s on %s refused in %v: %s", tc.action, tc.line, time.Since(start).Round(time.Millisecond), e.Message)
	}
	if got := status(); got != "idle" {
		t.Fatalf("a refused click went through: %q", got)
	}
	// Just inside: a longer wait for a control that becomes clickable.
	c.do("browser.eval", map[string]string{"js": "setTimeout(() => document.getElementById('overlay').remove(), 300)"})
	c.do("browser.click", map[string]any{"ref": refOf(t, s, `button "Covered"`), "timeout_ms": 5000})
	if got := status(); got != "under clicked" {
		t.Fatalf("after the overlay went: %q", got)
	}
	m, _ := c.do("browser.click", map[string]string{"ref": refOf(t, s, `checkbox "I agree"`)})
	if got := status(); got != "agree true" || m["via"] != "label" {
		t.Fatalf("the checkbox under its label: %q %v", got, m)
	}
	c.do("browser.click", map[string]string{"ref": refOf(t, s, `button \[ref`)})
	if got := status(); got != "searched" {
		t.Fatalf("the button with an icon at its centre: %q", got)
	}
	c.do("browser.click", map[string]string{"ref": refOf(t, s, `generic "Open the menu" \[clickable\]`)})
	if got := status(); got != "menu opened" {
		t.Fatalf("the clickable box: %q", got)
	}
	// Scroll ends where the page does, and says so.
	m, _ = c.do("browser.scroll", map[string]float64{"dy": 200000})
	if m["scroll_y"].(float64) <= 0 || m["scroll_y"] != m["max_scroll_y"] || m["at_end"] != true {
		t.Fatalf("a scroll past the end: %v", m)
	}
	m, _ = c.do("browser.scroll", map[string]float64{"dy": -200000})
	if m["scroll_y"].(float64) != 0 || m["at_start"] != true {
		t.Fatalf("a scroll past the start: %v", m)
	}
}

// A long article behind a long navigation: the default snapshot starts
// with the article, folds the navigation to a line, never goes past its
// cap in characters, never shows a line out of its place, and reads on to
// the end by offset; find and a ref's subtree reach the rest.
func TestSnapshotReadsOnPastItsCap(t *testing.T) {
	var page strings.Builder
	page.WriteString(`<!doctype html><title>Article</title><header><a href="/">Home</a></header><nav aria-label="Site"><ul>`)
	for i := range 300 {
		fmt.Fprintf(&page, `<li><a href="/topic/%d">Topic number %d</a></li>`, i, i)
	}
	page.WriteString(`</ul></nav><main><h1>The article</h1>`)
	long := strings.Repeat("every word of this long paragraph stays ", 20) + "to its very end."
	fmt.Fprintf(&page, "<p>%s</p>", long)
	page.WriteString(`<table><tr><td><a href="/ref"><code>Repeated</code></a></td></tr></table>`)
	for i := range 300 {
		fmt.Fprintf(&page, "<p>Paragraph %d says something of its own, naïvely.</p>", i)
	}
	page.WriteString(`</main><footer><a href="/about">About us</a> <a href="/legal">Legal</a></footer>`)
	url := serve(t, "127.0.0.1", map[string]string{"/": page.String()})
	c := call{t, newBrowser(t)}
	c.do("browser.navigate", map[string]string{"url": url})

	m, _ := c.do("browser.snapshot", map[string]int{"max_chars": 4000})
	first := m["snapshot"].(string)
	if n := utf8.RuneCountInString(first); n > 4000 {
		t.Fatalf("a 4000-character snapshot is %d characters", n)
	}
	lines := strings.Split(strings.TrimSuffix(first, "\n"), "\n")
	if !strings.HasPrefix(lines[0], "- main") || !strings.Contains(first, `heading "The article"`) {
		t.Fatalf("the snapshot does not start with the main content:\n%s", first)
	}
	if !regexp.MustCompile(`navigation "Site" \[ref=e\d+\] \(folded`).MatchString(first) && !strings.Contains(first, "Paragraph 10 ") {
		t.Fatalf("no folded navigation and little of the article:\n%s", first)
	}
	if !strings.Contains(first, long) {
		t.Errorf("the long paragraph is cut:\n%s", first)
	}
	if n := strings.Count(first, "Repeated"); n != 1 {
		t.Errorf("the cell's text shows %d times:\n%.1500s", n, first)
	}
	if !strings.Contains(first, `link "Repeated" [ref=`) || !strings.Contains(first, "-> /ref") {
		t.Errorf("the link has no address:\n%s", first)
	}
	// Reading on: every window within the cap, whole lines, in order, to
	// the end; phrases at 5%, 50% and 95% of the article are read.
	all := first
	for next := m["next_offset"]; next != nil; next = m["next_offset"] {
		m, _ = c.do("browser.snapshot", map[string]any{"max_chars": 4000, "offset": next})
		w := m["snapshot"].(string)
		if n := utf8.RuneCountInString(w); n > 4000 || !strings.HasSuffix(w, "\n") {
			t.Fatalf("a window of %d characters", n)
		}
		all += w
	}
	last := -1
	for _, p := range []int{15, 150, 285} {
		i := strings.Index(all, fmt.Sprintf("Paragraph %d says", p))
		if i < 0 || i < last {
			t.Fatalf("paragraph %d is not read in its place by reading on", p)
		}
		last = i
	}
	if !regexp.MustCompile(`contentinfo \[ref=e\d+\] \(folded`).MatchString(all) || strings.Contains(all, "About us") {
		t.Fatalf("the footer is not folded to a line at the end:\n%s", all[len(all)-300:])
	}
	if m, _ := c.do("browser.find", map[string]string{"text": "about us"}); m["total"].(float64) != 1 {
		t.Fatalf("find in the folded footer: %v", m)
	}
	// find: the line and where it is.
	m, _ = c.do("browser.find", map[string]string{"text": "Paragraph 150 says"})
	if m["total"].(float64) != 1 || !strings.Contains(fmt.Sprint(m["matches"]), "main") {
		t.Fatalf("find: %v", m)
	}
	m, _ = c.do("browser.find", map[string]string{"role": "link", "text": `topic number 29"`})
	if m["total"].(float64) != 1 {
		t.Fatalf("find a link in the folded navigation: %v", m)
	}
	// The navigation's ref opens it.
	nav := regexp.MustCompile(`navigation "Site" \[ref=(e\d+)\]`).FindStringSubmatch(all)
	if nav == nil {
		t.Fatalf("no navigation ref in:\n%s", all)
	}
	sub := snap(c, map[string]any{"ref": nav[1], "max_chars": 100000})
	if !strings.Contains(sub, `link "Topic number 299"`) || strings.Contains(sub, "Paragraph") {
		t.Fatalf("the navigation's subtree:\n%.2000s", sub)
	}
}

const toolsPage = `<!doctype html><title>Tools</title>
<p id="status">idle</p>
<div id="card" style="position:absolute;left:20px;top:80px;width:80px;height:40px;background:#ccd" onmousedown="window.dragging=true">Card</div>
<div id="bin" style="position:absolute;left:300px;top:80px;width:120px;height:80px;background:#eee"
  onmouseup="if (window.dragging) document.getElementById('status').textContent='dropped'">Bin</div>
<div style="position:absolute;top:200px">
<label>First <input id="first"></label> <label>Password <input id="pw" type="password"></label>
<button onclick="console.log('hello from the page', 42); fetch('/data'); fetch('http://127.0.0.1:1/nothing').catch(() => {}); setTimeout(() => { throw new Error('planted failure') })">Talk</button>
<a href="/second">Second</a>
</div>
<div style="height:3000px"></div>`

// The vocabulary playwright-mcp offers, here too: drag, resize, PDF, the
// console, the network, element and full-page screenshots, forward, and
// several fields at once.
func TestTheRestOfTheVocabulary(t *testing.T) {
	url := serve(t, "127.0.0.1", map[string]string{
		"/": toolsPage, "/second": `<!doctype html><title>Second</title><p>the second page</p>`, "/data": `{"ok":true}`,
	})
	c := call{t, newBrowser(t)}
	c.do("browser.navigate", map[string]string{"url": url})
	s := snap(c, nil)
	status := func() string { return pageText(c) }
	card, bin := refOf(t, s, `generic "Card" \[clickable\]`), ""
	x, y := 360.0, 120.0
	c.do("browser.drag", map[string]any{"from": map[string]string{"ref": card}, "to": map[string]any{"x": x, "y": y}})
	if got := status(); got != "dropped" || bin != "" {
		t.Fatalf("drag: %q", got)
	}

	m, _ := c.do("browser.fill", map[string]any{"fields": []map[string]string{
		{"ref": refOf(t, s, `textbox "First"`), "text": "Ada"}, {"ref": refOf(t, s, `textbox "Password"`), "text": "hunter2"}}})
	fields := m["fields"].([]any)
	if len(fields) != 2 || fields[0].(map[string]any)["password_field"] != false || fields[1].(map[string]any)["password_field"] != true {
		t.Fatalf("fill: %v", m)
	}
	v, _ := c.do("browser.eval", map[string]string{"js": "document.getElementById('first').value + '/' + document.getElementById('pw').value"})
	if v["value"] != "Ada/hunter2" {
		t.Fatalf("filled: %v", v)
	}

	c.do("browser.click", map[string]string{"ref": refOf(t, s, `button "Talk"`)})
	var con, net map[string]any
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		con, _ = c.do("browser.console", nil)
		net, _ = c.do("browser.network", nil)
		cs, ns := fmt.Sprint(con["messages"]), fmt.Sprint(net["requests"])
		ok, failed := false, false
		for _, r := range net["requests"].([]any) {
			r := r.(map[string]any)
			u, _ := r["url"].(string)
			ok = ok || (strings.HasSuffix(u, "/data") && r["status"] == 200.0)
			failed = failed || (strings.HasSuffix(u, "/nothing") && strings.HasPrefix(fmt.Sprint(r["failed"]), "net::ERR_"))
		}
		if strings.Contains(cs, "hello from the page 42") && strings.Contains(cs, "planted failure") && ok && failed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("console %v\nnetwork %v", cs, ns)
		}
	}

	m, blob := c.do("browser.screenshot", map[string]any{"ref": card, "format": "png"})
	if m["width"].(float64) != 80 || m["height"].(float64) != 40 || len(blob) == 0 {
		t.Fatalf("an element's screenshot: %v", m)
	}
	m, _ = c.do("browser.screenshot", map[string]any{"full_page": true, "format": "jpeg"})
	if m["height"].(float64) < 3000 {
		t.Fatalf("a full-page screenshot: %v", m)
	}
	m, _ = c.do("browser.resize", map[string]int{"width": 500, "height": 400})
	if m["width"].(float64) != 500 || m["height"].(float64) != 400 {
		t.Fatalf("resize: %v", m)
	}
	m, blob = c.do("browser.pdf", nil)
	if !strings.HasPrefix(string(blob), "%PDF-") || m["type"] != "application/pdf" {
		t.Fatalf("pdf: %v %.20q", m, blob)
	}
	m, _ = c.do("browser.click", map[string]string{"ref": refOf(t, s, `link "Second"`)})
	if m["navigated"] != true || m["title"] != "Second" {
		t.Fatalf("a click that navigates says so: %v", m)
	}
	c.do("browser.back", nil)
	m, _ = c.do("browser.forward", nil)
	if m["title"] != "Second" {
		t.Fatalf("forward: %v", m)
	}
}

// Real pages (testdata/pages, with their licenses): phrases at 5%, 50%
// and 95% of each page's main text are read from the default snapshot or
// by reading on from it; every window keeps its cap.
func TestRealPagesReadWhole(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "pages", "*.html"))
	if err != nil || len(files) < 3 {
		t.Fatalf("the saved pages: %v %v", files, err)
	}
	pages := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		pages["/"+filepath.Base(f)] = string(b)
	}
	base := serve(t, "127.0.0.1", pages)
	c := call{t, newBrowser(t)}
	for _, f := range files {
		name := filepath.Base(f)
		c.do("browser.navigate", map[string]string{"url": base + "/" + name})
		// The phrases: the text node at each share of the main text, its
		// first words.
		m, _ := c.do("browser.eval", map[string]string{"js": `(() => {
			const root = document.querySelector("main, [role=main], article") || document.body;
			const nodes = [], walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
			let total = 0;
			for (let n = walker.nextNode(); n; n = walker.nextNode()) {
				const words = n.textContent.trim().split(/\s+/).filter(Boolean);
				const shown = n.parentElement && n.parentElement.checkVisibility() && !n.parentElement.closest("script, style, nav");
				if (shown && words.length >= 4) { nodes.push([total, words.slice(0, 4).join(" ")]); }
				total += n.textContent.length;
			}
			return [0.05, 0.5, 0.95].map(share => { const at = total * share; let best = nodes[0];
				for (const n of nodes) if (n[0] <= at) best = n; return best[1]; });
		})()`})
		phrases := m["value"].([]any)
		first, _ := c.do("browser.snapshot", nil)
		all := first["snapshot"].(string)
		windows := 1
		for next := first["next_offset"]; next != nil; windows++ {
			w, _ := c.do("browser.snapshot", map[string]any{"offset": next})
			text := w["snapshot"].(string)
			if n := utf8.RuneCountInString(text); n > browser.DefaultSnapshotChars {
				t.Fatalf("%s: a window of %d characters", name, n)
			}
			all += text
			next = w["next_offset"]
		}
		flat := strings.Join(strings.Fields(all), " ")
		for i, p := range phrases {
			if !strings.Contains(flat, p.(string)) {
				t.Errorf("%s: the phrase at %s of the text, %q, is not read", name, []string{"5%", "50%", "95%"}[i], p)
			}
		}
		t.Logf("%s: the default snapshot is %d characters of %v in all (%d windows to read it whole)", name, utf8.RuneCountInString(first["snapshot"].(string)), first["total_chars"], windows)
	}
}

// A huge table: the snapshot keeps its cap, and find reaches its last row.
func TestHugeTableKeepsTheCap(t *testing.T) {
	var page strings.Builder
	page.WriteString(`<!doctype html><title>Table</title><table><tr><th>Name</th><th>Price</th><th>Link</th></tr>`)
	for i := range 2000 {
		fmt.Fprintf(&page, `<tr><td>Row %d</td><td>%d.00</td><td><a href="/item/%d">Item %d</a></td></tr>`, i, i, i, i)
	}
	page.WriteString(`</table>`)
	url := serve(t, "127.0.0.1", map[string]string{"/": page.String()})
	c := call{t, newBrowser(t)}
	c.do("browser.navigate", map[string]string{"url": url})
	m, _ := c.do("browser.snapshot", nil)
	if n := utf8.RuneCountInString(m["snapshot"].(string)); n > browser.DefaultSnapshotChars || m["truncated"] != true {
		t.Fatalf("a 2000-row table: %d characters, truncated %v", n, m["truncated"])
	}
	if !strings.Contains(m["snapshot"].(string), `cell "Row 0"`) || !strings.Contains(m["snapshot"].(string), `link "Item 0" [ref=`) {
		t.Fatalf("the table's first row:\n%.1500s", m["snapshot"])
	}
	m, _ = c.do("browser.find", map[string]string{"text": "Row 1999"})
	if m["total"].(float64) != 1 || !strings.Contains(fmt.Sprint(m["matches"]), "row") {
		t.Fatalf("find the last row: %v", m)
	}
}
