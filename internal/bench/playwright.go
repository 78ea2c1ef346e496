package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
)

// NPMDir is where scripts/agent-clis installs the npm packages the box's
// tests and benchmarks drive ($LOWKEY_AGENT_CLIS, else
// /var/cache/lowkey/agent-clis).
func NPMDir() string {
	if d := os.Getenv("LOWKEY_AGENT_CLIS"); d != "" {
		return d
	}
	return "/var/cache/lowkey/agent-clis"
}

// playwrightScript drives the same Chromium on the same page with
// playwright-core, counting each action the way browserRounds does:
// navigate+snapshot (goto, then the ARIA snapshot playwright's agents
// read), a click on the button, a PNG screenshot of the viewport.
const playwrightScript = `
const { chromium } = require("playwright-core");
const [bin, url, rounds] = process.argv.slice(1);
(async () => {
  const browser = await chromium.launch({ executablePath: bin, headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"] });
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const nav = [], click = [], shot = [];
  const round = async (keep) => {
    let t = performance.now();
    await page.goto(url);
    await page.locator("body").ariaSnapshot();
    const n = performance.now() - t;
    t = performance.now();
    await page.getByRole("button", { name: "Add one" }).click();
    const c = performance.now() - t;
    t = performance.now();
    await page.screenshot({ type: "png" });
    const s = performance.now() - t;
    if (keep) { nav.push(n); click.push(c); shot.push(s); }
  };
  await round(false);
  for (let i = 0; i < +rounds; i++) await round(true);
  const median = a => { a.sort((x, y) => x - y); return a[Math.floor(a.length / 2)]; };
  console.log(JSON.stringify({ navigate_snapshot_ms: median(nav), click_ms: median(click), screenshot_ms: median(shot) }));
  await browser.close();
})().catch(e => { console.error(e.message); process.exit(1); });
`

type playwrightFigures struct {
	NavigateSnapshotMS float64 `json:"navigate_snapshot_ms"`
	ClickMS            float64 `json:"click_ms"`
	ScreenshotMS       float64 `json:"screenshot_ms"`
}

// playwright runs the same rounds with playwright-core, when Node and the
// package are here; why not otherwise.
func playwright(ctx context.Context, bin, url string, rounds int) (*playwrightFigures, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, fmt.Errorf("no node on this machine")
	}
	mods := filepath.Join(NPMDir(), "node_modules")
	if _, err := os.Stat(filepath.Join(mods, "playwright-core", "package.json")); err != nil {
		return nil, fmt.Errorf("no playwright-core in %s (scripts/agent-clis installs it)", mods)
	}
	cmd := exec.CommandContext(ctx, node, "-e", playwrightScript, bin, url, strconv.Itoa(rounds))
	cmd.Env = append(os.Environ(), "NODE_PATH="+mods)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("playwright-core: %v: %s", err, bytes.TrimSpace(errb.Bytes()))
	}
	var f playwrightFigures
	if err := json.Unmarshal(bytes.TrimSpace(out.Bytes()), &f); err != nil {
		return nil, fmt.Errorf("playwright-core said %q: %w", out.String(), err)
	}
	return &f, nil
}
