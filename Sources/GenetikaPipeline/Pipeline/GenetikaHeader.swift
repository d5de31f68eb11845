/// Header names Genetika puts on the records it produces.
package enum GenetikaHeader {
    package static let sourceFile = "genetika-source-file"
    package static let sourceRow = "genetika-source-row"
    package static let error = "genetika-error"
    package static let sourceTopic = "genetika-source-topic"
    package static let sourcePartition = "genetika-source-partition"
    package static let sourceOffset = "genetika-source-offset"
    package static let stage = "genetika-stage"
}
