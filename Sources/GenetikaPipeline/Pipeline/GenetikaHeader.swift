/// Header names Genetika puts on the records it produces.
public enum GenetikaHeader {
    public static let sourceFile = "genetika-source-file"
    public static let sourceRow = "genetika-source-row"
    public static let error = "genetika-error"
    public static let sourceTopic = "genetika-source-topic"
    public static let sourcePartition = "genetika-source-partition"
    public static let sourceOffset = "genetika-source-offset"
    public static let stage = "genetika-stage"
}
