// jsdom lacks matchMedia (uPlot and the theme read it) and ResizeObserver.
if (typeof window.matchMedia !== "function") {
  const mm = (query: string) => ({
    matches: false, media: query, onchange: null,
    addEventListener() {}, removeEventListener() {}, addListener() {}, removeListener() {}, dispatchEvent: () => false,
  });
  Object.defineProperty(window, "matchMedia", { configurable: true, value: mm });
}
if (typeof globalThis.ResizeObserver !== "function") {
  globalThis.ResizeObserver = class { observe() {} unobserve() {} disconnect() {} } as unknown as typeof ResizeObserver;
}
