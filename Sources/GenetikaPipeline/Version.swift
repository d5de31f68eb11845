/// Genetika's own version.
package enum GenetikaVersion {
    package static let string = "0.1.0"
}
