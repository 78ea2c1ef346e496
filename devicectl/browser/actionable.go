package browser

import (
	"context"
	"encoding/json"
	"time"

	"github.com/go-rod/rod"
	"github.com/go-rod/rod/lib/proto"

	"github.com/lowkeyhq/lowkey/errcode"
)

// DefaultActionTimeout is how long an action waits for its element to
// become something a person could act on before it says why not.
const DefaultActionTimeout = 1500 * time.Millisecond

// checkActionable runs in the element's own frame: it scrolls the element
// into view and says whether a person's pointer would reach it (attached,
// visible, enabled, not moving, the topmost thing at its centre or inside
// it), and if not, what is in the way. A control hidden or covered by its
// own label is reached through the label, as a person would.
const checkActionable = `async function (needEnabled) {
	const el = this;
	const describe = e => {
		if (!e) return "nothing";
		let s = "<" + e.tagName.toLowerCase();
		if (e.id) s += " id=\"" + e.id + "\"";
		const cls = typeof e.className === "string" ? e.className.trim() : "";
		if (cls) s += " class=\"" + cls.split(/\s+/).slice(0, 3).join(" ") + "\"";
		s += ">";
		const text = (e.innerText || e.textContent || "").trim().replace(/\s+/g, " ");
		if (text) s += " " + JSON.stringify(text.length > 40 ? text.slice(0, 40) + "…" : text);
		return s;
	};
	const labelOf = e => (e.labels && e.labels.length ? e.labels[0] : null) || (e.closest && e.closest("label"));
	if (!el.isConnected) return { why: "it is no longer on the page: take a new snapshot" };
	if (needEnabled && (el.disabled || (el.closest && el.closest("fieldset[disabled]")) || el.getAttribute("aria-disabled") === "true"))
		return { why: "it is disabled", retry: true };
	let target = el, via = "";
	const shown = e => { const s = getComputedStyle(e), r = e.getBoundingClientRect(); return s.visibility !== "hidden" && s.display !== "none" && r.width > 0 && r.height > 0; };
	if (!shown(el)) {
		const lab = labelOf(el);
		if (lab && lab !== el && shown(lab)) { target = lab; via = "label"; }
		else return { why: "it is not visible", retry: true };
	}
	target.scrollIntoView({ block: "center", inline: "center", behavior: "instant" });
	const frames = () => new Promise(r => requestAnimationFrame(r));
	const r1 = target.getBoundingClientRect();
	await frames();
	const r = target.getBoundingClientRect();
	if (Math.abs(r.x - r1.x) > 1 || Math.abs(r.y - r1.y) > 1 || Math.abs(r.width - r1.width) > 1) return { why: "it is still moving", retry: true };
	const x = r.left + r.width / 2, y = r.top + r.height / 2;
	if (x < 0 || y < 0 || x > innerWidth || y > innerHeight) return { why: "it is outside the window even after scrolling", retry: true };
	const root = target.getRootNode();
	const top = (root.elementFromPoint ? root : document).elementFromPoint(x, y);
	const inside = e => e && (e === target || target.contains(e) || (e.shadowRoot && e.contains(target)));
	if (inside(top)) return { ok: true, via };
	const lab = labelOf(el);
	if (lab && lab !== el && (top === lab || lab.contains(top))) return { ok: true, via: "label" };
	return { why: "it is covered by " + describe(top), retry: true };
}`

type actionability struct {
	OK    bool   `json:"ok"`
	Why   string `json:"why"`
	Retry bool   `json:"retry"`
	Via   string `json:"via"`
}

// reach finds ref's element and waits up to limit for it to take a
// pointer, then returns it and where to put the pointer in the page's
// coordinates, or why a person could not.
func (b *Browser) reach(ctx context.Context, p *rod.Page, ref string, limit time.Duration, needEnabled bool) (*rod.Element, proto.Point, string, error) {
	el, err := b.element(ctx, p, ref)
	if err != nil {
		return nil, proto.Point{}, "", err
	}
	pt, via, err := waitActionable(ctx, el, limit, needEnabled)
	if code, e := errcode.Of(err); code == errcode.NotActionable {
		return nil, proto.Point{}, "", errcode.New(errcode.NotActionable, "%s is not reachable: %s", ref, e.Message)
	}
	return el, pt, via, err
}

func waitActionable(ctx context.Context, el *rod.Element, limit time.Duration, needEnabled bool) (proto.Point, string, error) {
	deadline := time.Now().Add(limit)
	for {
		res, err := el.Context(ctx).Eval(checkActionable, needEnabled)
		if err != nil {
			return proto.Point{}, "", err
		}
		var a actionability
		if err := json.Unmarshal([]byte(res.Value.JSON("", "")), &a); err != nil {
			return proto.Point{}, "", err
		}
		if a.OK {
			pt, err := pagePoint(el, a.Via == "label")
			return pt, a.Via, err
		}
		if !a.Retry || time.Now().After(deadline) {
			return proto.Point{}, "", errcode.New(errcode.NotActionable, "%s", a.Why)
		}
		select {
		case <-ctx.Done():
			return proto.Point{}, "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// pagePoint is the centre of el (or of its label) in the page's
// viewport, frames included: the quads the browser reports are in the
// top page's coordinates.
func pagePoint(el *rod.Element, label bool) (proto.Point, error) {
	target := el
	if label {
		obj, err := el.Evaluate(rod.Eval(`function () { return (this.labels && this.labels[0]) || this.closest("label") }`).ByObject())
		if err != nil {
			return proto.Point{}, err
		}
		// The label lives where the control does (its frame's session).
		if target, err = el.Page().ElementFromObject(obj); err != nil {
			return proto.Point{}, err
		}
	}
	shape, err := target.Shape()
	if err != nil {
		return proto.Point{}, err
	}
	box := shape.Box()
	if box == nil {
		return proto.Point{}, errcode.New(errcode.NotActionable, "it has no box on the page")
	}
	return proto.Point{X: box.X + box.Width/2, Y: box.Y + box.Height/2}, nil
}
