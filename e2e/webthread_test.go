package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// The thread after 100 messages, at a window's size and a phone's: the
// composer and Stop stay in view (the thread scrolls, not the page), the
// thread keeps to its end only while the reader is there, nothing is
// wider than a phone, and an agent's Markdown renders, inert.
func TestWebAppLongThreadAndMarkdown(t *testing.T) {
	b := startBox(t, "", t.TempDir(), "127.0.0.1:0", "--no-mdns")
	setup := b.waitFor(`Create the owner \(this link works once\): (\S+)`, 5*time.Second)
	base := setup[:strings.Index(setup, "/#/")]
	w := ownerPage(t, openBrowser(t), setup)
	uncaught := w.errors()
	w.page = w.page.Timeout(5 * time.Minute)
	w.size(1280, 800)
	token := strings.TrimSpace(mustRun(t, "", "lowkey", "token", "--data", b.data))
	sid := apiJSON(t, "POST", base+"/api/v1/sessions", token, `{}`, 201)["id"].(string)
	// 50 turns: 100 messages, each agent's reply three lines long.
	for i := range 50 {
		if tr := runTurn(t, b, token, sid, fmt.Sprintf("echo reply %d\n\nsecond line\n\nthird line", i)); tr.State != "done" {
			t.Fatalf("turn %d: %+v", i, tr)
		}
	}
	markdownReply := strings.Join([]string{
		"# A heading", "", "- first item", "- second item", "", "```", "go test ./...", "```", "",
		"| a | b |", "|---|---|", "| 1 | 2 |", "",
		`<script>window.pwned = "script"</script>`, "",
		`<img src="x" onerror="window.pwned = 'onerror'">`, "",
		`[a link](javascript:window.pwned='link') and [a page](https://example.com/)`,
	}, "\n")
	if tr := runTurn(t, b, token, sid, "echo "+markdownReply); tr.State != "done" {
		t.Fatalf("the Markdown turn: %+v", tr)
	}

	if err := w.page.Navigate(base + "/#/c/" + sid); err != nil {
		t.Fatal(err)
	}
	w.drawn()
	w.until(`() => document.querySelectorAll(".events .msg").length >= 102`, 20*time.Second, "102 messages")
	// The Markdown as Markdown: a heading, a list, a code block with Copy,
	// a table; the script, the handler and the javascript: link inert.
	md := `document.querySelector(".events li.msg.agent:last-of-type .md")`
	got := w.eval(`() => { const m = ` + md + `; return {
		h: !!m.querySelector("h1"), li: m.querySelectorAll("ul li").length, code: m.querySelector(".code pre")?.textContent,
		copy: !!m.querySelector(".code button.copy"), cells: m.querySelectorAll("table td").length,
		script: m.querySelectorAll("script").length, handlers: [...m.querySelectorAll("*")].filter(e => [...e.attributes].some(a => a.name.startsWith("on"))).length,
		js: [...m.querySelectorAll("a")].filter(a => /^javascript:/i.test(a.getAttribute("href") || "")).length,
		page: m.querySelector('a[href="https://example.com/"]')?.target, imgs: m.querySelectorAll("img").length, pwned: window.pwned || "" } }`)
	if !got.Get("h").Bool() || got.Get("li").Int() != 2 || strings.TrimSpace(got.Get("code").Str()) != "go test ./..." || !got.Get("copy").Bool() || got.Get("cells").Int() != 2 {
		w.shot("failed")
		t.Errorf("the agent's Markdown rendered as %v", got)
	}
	// The image is a link: a reply makes the page fetch nothing.
	if got.Get("script").Int() != 0 || got.Get("imgs").Int() != 0 || got.Get("handlers").Int() != 0 || got.Get("js").Int() != 0 || got.Get("pwned").Str() != "" {
		t.Errorf("the agent's Markdown is not inert: %v", got)
	}
	if got.Get("page").Str() != "_blank" {
		t.Errorf("a link in a reply opens in %q, not a new tab", got.Get("page").Str())
	}
	w.clickText(".md a", "a link")
	if p := w.eval(`() => window.pwned || ""`).Str(); p != "" {
		t.Errorf("clicking the javascript: link ran it: %q", p)
	}
	w.shot("markdown")

	atEnd := `() => { const t = document.querySelector(".events"); return t.scrollHeight - t.scrollTop - t.clientHeight < 48 }`
	for _, size := range []struct {
		name          string
		width, height int
	}{{"window", 1280, 800}, {"phone", 390, 844}} {
		w.size(size.width, size.height)
		w.page.MustReload()
		w.drawn()
		w.until(`() => document.querySelectorAll(".events .msg").length >= 102`, 20*time.Second, "102 messages")
		// Opened at its end; the thread scrolls, the page does not.
		w.until(atEnd, 5*time.Second, size.name+": the thread opened at its end")
		if r := w.eval(`() => { const t = document.querySelector(".events"); return [t.scrollHeight > t.clientHeight, document.scrollingElement.scrollHeight <= innerHeight + 1] }`).Arr(); !r[0].Bool() || !r[1].Bool() {
			t.Errorf("%s: the thread scrolls %v, the page fits its window %v", size.name, r[0].Bool(), r[1].Bool())
		}
		for _, sel := range []string{".composer", "#message", ".toggles", ".thread-head"} {
			if !w.inView(sel) {
				w.shot(size.name + " failed")
				t.Errorf("%s: %s is not in view after 100 messages", size.name, sel)
			}
		}
		w.noOverflow(size.name)
		w.axe("a long conversation, " + size.name)
		w.shot(size.name + " long thread")
		// Stop is there while a turn runs, in view.
		w.say("think 60")
		w.until(`() => !document.getElementById("stop").hidden`, 10*time.Second, "Stop while the turn runs")
		if !w.inView("#stop") {
			w.shot(size.name + " failed")
			t.Errorf("%s: Stop is not in view after 100 messages", size.name)
		}
		w.until(atEnd, 5*time.Second, size.name+": following the new turn at the end")
		w.shot(size.name + " turn running")
		w.click("#stop")
		w.until(`() => document.getElementById("stop").hidden`, 10*time.Second, "the turn stopped")
		// A reader scrolled up stays where they are when more arrives, and
		// is told there is more.
		w.eval(`() => { document.querySelector(".events").scrollTop = 0 }`)
		w.until(`() => document.querySelector(".events").scrollTop === 0`, 5*time.Second, "scrolled to the top")
		apiJSON(t, "POST", base+"/api/v1/sessions/"+sid+"/messages", token, `{"text":"echo while you read"}`, 201)
		w.until(`() => /while you read/.test(document.querySelector(".events").lastElementChild.textContent) && !document.querySelector(".jump").hidden`, 15*time.Second, "the new reply and the jump button")
		if top := w.eval(`() => document.querySelector(".events").scrollTop`).Int(); top != 0 {
			t.Errorf("%s: the thread moved to %d while the reader was at the top", size.name, top)
		}
		w.click(".jump")
		w.until(atEnd, 5*time.Second, size.name+": the jump button going to the end")
		w.until(`() => document.querySelector(".jump").hidden`, 5*time.Second, "the jump button going")
	}
	// On a phone the focus pane is a sheet, the sidebar a drawer; each
	// opens in view and closes.
	w.click(".focus-toggle")
	w.until(`() => { const r = document.getElementById("focus").getBoundingClientRect(); return r.top >= 0 && r.bottom <= innerHeight + 1 && r.left >= 0 && getComputedStyle(document.getElementById("focus")).visibility === "visible" }`, 5*time.Second, "the focus sheet in view")
	w.shot("phone focus sheet")
	w.axe("the focus sheet on a phone")
	w.clickText(".focus button", "Close")
	w.until(`() => getComputedStyle(document.getElementById("focus")).visibility === "hidden"`, 5*time.Second, "the focus sheet closed")
	w.click(`button[aria-controls="sidebar"]`)
	w.until(`() => { const r = document.getElementById("sidebar").getBoundingClientRect(); return r.left >= 0 && getComputedStyle(document.getElementById("sidebar")).visibility === "visible" }`, 5*time.Second, "the sidebar drawer in view")
	w.shot("phone sidebar")
	w.noOverflow("the sidebar drawer")
	w.clickText("#sidebar button", "Close")
	w.until(`() => getComputedStyle(document.getElementById("sidebar")).visibility === "hidden"`, 5*time.Second, "the sidebar drawer closed")

	if errs := uncaught(); len(errs) > 0 {
		t.Errorf("uncaught errors on the page: %v", errs)
	}
	// The checkers themselves find what they are for: an uncaught error,
	// a button with no name.
	w.eval(`() => { setTimeout(() => { throw new Error("a planted error") }) }`)
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(strings.Join(uncaught(), " "), "a planted error"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the page's uncaught errors were not seen: %v", uncaught())
		}
	}
	w.eval(`() => { document.querySelector(".composer").append(Object.assign(document.createElement("button"), { id: "nameless" })) }`)
	res := w.eval(`async () => (await axe.run(document, { resultTypes: ["violations"] })).violations.map(v => v.id)`)
	if !strings.Contains(res.String(), "button-name") {
		t.Fatalf("axe-core did not notice a button without a name: %v", res)
	}
}
