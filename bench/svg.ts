export interface Series {
  name: string
  color: string
  dashed?: boolean
  points: readonly (readonly [number, number])[]
}

export interface ChartOptions {
  title: string
  xLabel: string
  yLabel: string
  series: readonly Series[]
}

const WIDTH = 720
const HEIGHT = 420
const LEFT = 70
const RIGHT = 170
const TOP = 40
const BOTTOM = 55

/**
 * lineChart draws series on log2 x and log10 y axes as a standalone SVG: enough for
 * latency against concurrency, with no charting dependency.
 */
export function lineChart(options: ChartOptions): string {
  const points = options.series.flatMap((s) => s.points)
  const xs = points.map(([x]) => x)
  const ys = points.map(([, y]) => y).filter((y) => y > 0)
  const xMin = Math.log2(Math.min(...xs))
  const xMax = Math.max(xMin + 1, Math.log2(Math.max(...xs)))
  const yMin = Math.floor(Math.log10(Math.min(...ys)))
  const yMax = Math.max(yMin + 1, Math.ceil(Math.log10(Math.max(...ys))))
  const plotW = WIDTH - LEFT - RIGHT
  const plotH = HEIGHT - TOP - BOTTOM
  const px = (x: number): number => LEFT + ((Math.log2(x) - xMin) / (xMax - xMin)) * plotW
  const py = (y: number): number =>
    TOP + plotH - ((Math.log10(Math.max(y, 10 ** yMin)) - yMin) / (yMax - yMin)) * plotH
  const f = (n: number): string => n.toFixed(1)
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif" font-size="12">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`,
    `<text x="${WIDTH / 2}" y="22" text-anchor="middle" font-size="15">${escape(options.title)}</text>`,
  ]
  for (let e = yMin; e <= yMax; e++) {
    for (const m of [1, 2, 5]) {
      const y = m * 10 ** e
      if (Math.log10(y) > yMax) break
      const yy = py(y)
      out.push(
        `<line x1="${LEFT}" x2="${LEFT + plotW}" y1="${f(yy)}" y2="${f(yy)}" stroke="${m === 1 ? '#ccc' : '#eee'}"/>`,
        `<text x="${LEFT - 6}" y="${f(yy + 4)}" text-anchor="end">${formatNumber(y)}</text>`,
      )
    }
  }
  for (const x of [...new Set(xs)].sort((a, b) => a - b)) {
    const xx = px(x)
    out.push(
      `<line x1="${f(xx)}" x2="${f(xx)}" y1="${TOP}" y2="${TOP + plotH}" stroke="#eee"/>`,
      `<text x="${f(xx)}" y="${TOP + plotH + 18}" text-anchor="middle">${x}</text>`,
    )
  }
  out.push(
    `<rect x="${LEFT}" y="${TOP}" width="${plotW}" height="${plotH}" fill="none" stroke="#888"/>`,
    `<text x="${LEFT + plotW / 2}" y="${HEIGHT - 12}" text-anchor="middle">${escape(options.xLabel)}</text>`,
    `<text transform="translate(18 ${TOP + plotH / 2}) rotate(-90)" text-anchor="middle">${escape(options.yLabel)}</text>`,
  )
  options.series.forEach((s, i) => {
    const path = s.points.map(([x, y]) => `${f(px(x))},${f(py(y))}`).join(' ')
    const dash = s.dashed === true ? ' stroke-dasharray="6 4"' : ''
    out.push(
      `<polyline points="${path}" fill="none" stroke="${s.color}" stroke-width="2"${dash}/>`,
      ...s.points.map(
        ([x, y]) => `<circle cx="${f(px(x))}" cy="${f(py(y))}" r="3" fill="${s.color}"/>`,
      ),
    )
    const ly = TOP + 14 + i * 20
    const lx = LEFT + plotW + 14
    out.push(
      `<line x1="${lx}" x2="${lx + 24}" y1="${ly}" y2="${ly}" stroke="${s.color}" stroke-width="2"${dash}/>`,
      `<text x="${lx + 30}" y="${ly + 4}">${escape(s.name)}</text>`,
    )
  })
  out.push('</svg>')
  return out.join('\n') + '\n'
}

function formatNumber(n: number): string {
  return n >= 1 ? String(Math.round(n)) : String(Number(n.toPrecision(1)))
}

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}
