/// Genetika's own version.
public enum GenetikaVersion {
    public static let string = "0.1.0"
}
