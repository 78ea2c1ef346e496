package devicectl

// Capability is what a computer must offer, and a conversation must be
// granted, for an action.
type Capability string

const (
	// CapSys needs a paired, online computer and nothing else.
	CapSys Capability = "sys"
	// CapBrowser needs the conversation's browser toggle.
	CapBrowser Capability = "browser"
	// CapDesktop needs the conversation's desktop toggle.
	CapDesktop Capability = "desktop"
)

// Actions is the vocabulary, by name, with the capability each needs.
var Actions = map[string]Capability{
	"sys.info": CapSys, "sys.echo": CapSys,

	"browser.tabs": CapBrowser, "browser.navigate": CapBrowser, "browser.back": CapBrowser, "browser.forward": CapBrowser,
	"browser.find": CapBrowser, "browser.fill": CapBrowser,
	"browser.snapshot": CapBrowser, "browser.click": CapBrowser, "browser.hover": CapBrowser,
	"browser.type": CapBrowser, "browser.press": CapBrowser, "browser.select": CapBrowser,
	"browser.scroll": CapBrowser, "browser.wait_for": CapBrowser, "browser.screenshot": CapBrowser,
	"browser.upload": CapBrowser, "browser.downloads": CapBrowser, "browser.dialog": CapBrowser,
	"browser.eval": CapBrowser, "browser.drag": CapBrowser, "browser.resize": CapBrowser, "browser.pdf": CapBrowser,
	"browser.console": CapBrowser, "browser.network": CapBrowser,

	"screen.screenshot": CapDesktop, "screen.zoom": CapDesktop, "screen.click": CapDesktop,
	"screen.move": CapDesktop, "screen.drag": CapDesktop, "screen.scroll": CapDesktop,
	"screen.type": CapDesktop, "screen.key": CapDesktop, "screen.cursor_position": CapDesktop,
	"screen.size": CapDesktop,
}

// Lookup returns the capability an action needs.
func Lookup(action string) (Capability, bool) {
	c, ok := Actions[action]
	return c, ok
}
