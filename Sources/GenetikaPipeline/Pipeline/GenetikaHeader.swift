/// Header names Genetika puts on the records it produces.
enum GenetikaHeader {
    static let sourceFile = "genetika-source-file"
    static let sourceRow = "genetika-source-row"
    static let error = "genetika-error"
    static let sourceTopic = "genetika-source-topic"
    static let sourcePartition = "genetika-source-partition"
    static let sourceOffset = "genetika-source-offset"
    static let stage = "genetika-stage"
}
