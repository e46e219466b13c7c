import { useEffect, useRef } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface ChartProps {
  /** x in unix seconds, then one array per series. */
  data: uPlot.AlignedData;
  series: { label: string; color: string; fill?: string; width?: number; dash?: number[] }[];
  /** Fill between two series indexes (1-based, as uPlot counts). */
  band?: [number, number];
  height?: number;
  unit?: string;
  /** Called with the selected x range (seconds) when the user drags to zoom. */
  onZoom?: (from: number, to: number) => void;
  ariaLabel: string;
  compact?: boolean;
  /** Fixed x range in unix seconds (the requested time range). */
  xRange?: [number, number];
}

function cssVar(name: string, fallback: string): string {
  const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return v || fallback;
}

/** A uPlot chart that fills its container's width and follows it on resize. */
export function Chart({ data, series, band, height = 240, unit, onZoom, ariaLabel, compact, xRange }: ChartProps) {
  const host = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const zoom = useRef(onZoom);
  zoom.current = onZoom;

  useEffect(() => {
    const el = host.current;
    if (!el) return;
    const text = cssVar("--secondary-text-color", "#727272");
    const grid = cssVar("--divider-color", "rgba(0,0,0,.12)");
    const axis = { stroke: text, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
    const opts: uPlot.Options = {
      width: Math.max(el.clientWidth, 120),
      height,
      legend: { show: !compact },
      cursor: { drag: { x: !!onZoom, y: false, setScale: false } },
      scales: { x: xRange ? { time: true, range: () => xRange } : { time: true } },
      axes: compact
        ? [{ show: false }, { show: false }]
        : [axis, { ...axis, size: unit ? 80 : 56, values: (_u, vals) => vals.map((v) => `${v}${unit ? ` ${unit}` : ""}`) }],
      series: [
        {},
        ...series.map((s) => ({
          label: s.label,
          stroke: s.color,
          fill: s.fill,
          width: s.width ?? 2,
          dash: s.dash,
          // dots only where lines would be too sparse to see
          points: { show: (u: uPlot) => u.data[0].length < 40, size: 6 },
          spanGaps: false,
        })),
      ],
      bands: band ? [{ series: band, fill: series[band[1] - 1]?.fill ?? "rgba(3,169,244,.15)" }] : undefined,
      hooks: {
        setSelect: [
          (u) => {
            if (u.select.width > 2 && zoom.current) {
              const from = u.posToVal(u.select.left, "x");
              const to = u.posToVal(u.select.left + u.select.width, "x");
              u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
              zoom.current(from, to);
            }
          },
        ],
      },
    };
    const p = new uPlot(opts, data, el);
    plot.current = p;
    const ro = new ResizeObserver(() => p.setSize({ width: Math.max(el.clientWidth, 120), height }));
    ro.observe(el);
    return () => {
      ro.disconnect();
      p.destroy();
      plot.current = null;
    };
    // the series layout decides the chart; data changes are pushed below
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [JSON.stringify(series), band?.[0], band?.[1], height, unit, compact, !!onZoom, xRange?.[0], xRange?.[1]]);

  useEffect(() => {
    plot.current?.setData(data);
  }, [data]);

  return <div className="chart" ref={host} role="img" aria-label={ariaLabel} />;
}
