/// A self-contained SVG scatter plot with axes, ticks, units and a legend. Each point is
/// one `<circle class="mark …">`, so a plot holds exactly one mark per plotted event.
struct SVGScatterPlot {
    struct Series {
        var name: String
        var color: String
        var points: [(x: Double, y: Double)]
    }

    var title: String
    var xLabel: String
    var yLabel: String
    var series: [Series]
    var width = 900.0
    var height = 500.0
    /// Drawn inside the same SVG below the scatter (e.g. a histogram), when given.
    var histogram: SVGHistogram?

    private let left = 80.0, right = 170.0, top = 50.0, bottom = 60.0

    func render() -> String {
        let totalHeight = height + (histogram == nil ? 0 : 320)
        var svg = """
            <?xml version="1.0" encoding="UTF-8"?>
            <svg xmlns="http://www.w3.org/2000/svg" width="\(fmt(width))" height="\(fmt(totalHeight))" viewBox="0 0 \(fmt(width)) \(fmt(totalHeight))" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(fmt(width / 2))" y="24" text-anchor="middle" font-size="16">\(escapeXML(title))</text>

            """
        let all = series.flatMap(\.points)
        let xs = all.map(\.x), ys = all.map(\.y)
        let xRange = niceRange(xs.min() ?? 0, xs.max() ?? 1)
        let yRange = niceRange(min(0, ys.min() ?? 0), ys.max() ?? 1)
        let plotWidth = width - left - right, plotHeight = height - top - bottom
        func px(_ x: Double) -> Double { left + (x - xRange.lower) / (xRange.upper - xRange.lower) * plotWidth }
        func py(_ y: Double) -> Double { top + plotHeight - (y - yRange.lower) / (yRange.upper - yRange.lower) * plotHeight }
        svg += axes(xRange: xRange, yRange: yRange, x0: left, y0: top, w: plotWidth, h: plotHeight, xLabel: xLabel, yLabel: yLabel)
        for (index, s) in series.enumerated() {
            svg += "<g class=\"series\" data-series=\"\(escapeXML(s.name))\" fill=\"\(s.color)\" fill-opacity=\"0.75\">\n"
            for point in s.points {
                svg += "<circle class=\"mark\" cx=\"\(fmt(px(point.x)))\" cy=\"\(fmt(py(point.y)))\" r=\"2.5\"/>\n"
            }
            svg += "</g>\n"
            let ly = top + 10 + Double(index) * 20
            svg += "<circle cx=\"\(fmt(width - right + 20))\" cy=\"\(fmt(ly))\" r=\"5\" fill=\"\(s.color)\"/>"
            svg += "<text x=\"\(fmt(width - right + 32))\" y=\"\(fmt(ly + 4))\">\(escapeXML(s.name)) (\(s.points.count))</text>\n"
        }
        if let histogram {
            svg += histogram.render(x0: left, y0: height + 20, w: plotWidth, h: 240)
        }
        svg += "</svg>\n"
        return svg
    }
}

/// Bars of a distribution, drawn inside another plot's SVG.
struct SVGHistogram {
    var title: String
    var xLabel: String
    var values: [Double]
    var bins = 40

    func render(x0: Double, y0: Double, w: Double, h: Double) -> String {
        guard let low = values.min(), let high = values.max() else { return "" }
        let range = niceRange(low, high == low ? low + 1 : high)
        let width = (range.upper - range.lower) / Double(bins)
        var counts = [Int](repeating: 0, count: bins)
        for v in values { counts[min(bins - 1, max(0, Int((v - range.lower) / width)))] += 1 }
        let yRange = niceRange(0, Double(counts.max() ?? 1))
        var svg = "<text x=\"\(fmt(x0 + w / 2))\" y=\"\(fmt(y0 - 4))\" text-anchor=\"middle\" font-size=\"14\">\(escapeXML(title))</text>\n"
        svg += axes(xRange: range, yRange: yRange, x0: x0, y0: y0 + 10, w: w, h: h, xLabel: xLabel, yLabel: "ids")
        svg += "<g class=\"histogram\" fill=\"#4c72b0\">\n"
        for (i, count) in counts.enumerated() where count > 0 {
            let bh = Double(count) / (yRange.upper - yRange.lower) * h
            svg += "<rect class=\"bar\" x=\"\(fmt(x0 + Double(i) * w / Double(bins)))\" y=\"\(fmt(y0 + 10 + h - bh))\" width=\"\(fmt(w / Double(bins) - 1))\" height=\"\(fmt(bh))\"><title>\(count)</title></rect>\n"
        }
        return svg + "</g>\n"
    }
}

/// Axes with about five ticks each, tick labels and axis labels.
private func axes(xRange: (lower: Double, upper: Double), yRange: (lower: Double, upper: Double),
                  x0: Double, y0: Double, w: Double, h: Double, xLabel: String, yLabel: String) -> String {
    var svg = "<g class=\"axes\" stroke=\"#333\" fill=\"none\"><line x1=\"\(fmt(x0))\" y1=\"\(fmt(y0 + h))\" x2=\"\(fmt(x0 + w))\" y2=\"\(fmt(y0 + h))\"/><line x1=\"\(fmt(x0))\" y1=\"\(fmt(y0))\" x2=\"\(fmt(x0))\" y2=\"\(fmt(y0 + h))\"/></g>\n"
    for tick in ticks(xRange) {
        let x = x0 + (tick - xRange.lower) / (xRange.upper - xRange.lower) * w
        svg += "<line x1=\"\(fmt(x))\" y1=\"\(fmt(y0 + h))\" x2=\"\(fmt(x))\" y2=\"\(fmt(y0 + h + 5))\" stroke=\"#333\"/><text x=\"\(fmt(x))\" y=\"\(fmt(y0 + h + 18))\" text-anchor=\"middle\">\(label(tick))</text>\n"
    }
    for tick in ticks(yRange) {
        let y = y0 + h - (tick - yRange.lower) / (yRange.upper - yRange.lower) * h
        svg += "<line x1=\"\(fmt(x0 - 5))\" y1=\"\(fmt(y))\" x2=\"\(fmt(x0))\" y2=\"\(fmt(y))\" stroke=\"#333\"/><line x1=\"\(fmt(x0))\" y1=\"\(fmt(y))\" x2=\"\(fmt(x0 + w))\" y2=\"\(fmt(y))\" stroke=\"#ddd\"/><text x=\"\(fmt(x0 - 8))\" y=\"\(fmt(y + 4))\" text-anchor=\"end\">\(label(tick))</text>\n"
    }
    svg += "<text x=\"\(fmt(x0 + w / 2))\" y=\"\(fmt(y0 + h + 40))\" text-anchor=\"middle\">\(escapeXML(xLabel))</text>\n"
    svg += "<text transform=\"translate(\(fmt(x0 - 55)) \(fmt(y0 + h / 2))) rotate(-90)\" text-anchor=\"middle\">\(escapeXML(yLabel))</text>\n"
    return svg
}

/// A range widened to round numbers.
private func niceRange(_ low: Double, _ high: Double) -> (lower: Double, upper: Double) {
    guard high > low else { return (low - 1, low + 1) }
    let step = niceStep((high - low) / 5)
    return ((low / step).rounded(.down) * step, (high / step).rounded(.up) * step)
}

private func niceStep(_ raw: Double) -> Double {
    let magnitude = pow10((raw > 0 ? raw : 1).log10Floor)
    let fraction = raw / magnitude
    return (fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10) * magnitude
}

private func ticks(_ range: (lower: Double, upper: Double)) -> [Double] {
    let step = niceStep((range.upper - range.lower) / 5)
    var result: [Double] = []
    var tick = range.lower
    while tick <= range.upper + step / 1000 && result.count < 20 {
        result.append(tick)
        tick += step
    }
    return result
}

private func pow10(_ exponent: Int) -> Double {
    var value = 1.0
    if exponent >= 0 { for _ in 0..<exponent { value *= 10 } } else { for _ in 0..<(-exponent) { value /= 10 } }
    return value
}

extension Double {
    fileprivate var log10Floor: Int {
        var exponent = 0
        var value = self
        while value >= 10 { value /= 10; exponent += 1 }
        while value < 1 { value *= 10; exponent -= 1 }
        return exponent
    }
}

private func label(_ value: Double) -> String {
    if value == value.rounded() && abs(value) < 1e12 { return String(Int64(value)) }
    return fmt(value)
}

func fmt(_ value: Double) -> String {
    let scaled = (value * 100).rounded() / 100
    if scaled == scaled.rounded() && abs(scaled) < 1e12 { return String(Int64(scaled)) }
    return String(scaled)
}

func escapeXML(_ text: String) -> String {
    var out = ""
    for c in text {
        switch c {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        default: out.append(c)
        }
    }
    return out
}
