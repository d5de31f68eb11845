import CRdkafka
import Foundation
import GenetikaSupport
import Logging
import Synchronization

/// librdkafka properties for one client handle, built from the shared Kafka settings plus
/// what the client itself needs. Any librdkafka property may appear.
package struct KafkaClientConfiguration: Sendable {
    package var properties: [String: String]
    /// Told when the client loses every broker and when it reaches one again.
    package var observer: (any KafkaConnectivityObserver)?

    package init(bootstrapServers: String, properties: [String: String] = [:]) {
        self.properties = properties
        self.properties["bootstrap.servers"] = bootstrapServers
    }

    package subscript(key: String) -> String? {
        get { properties[key] }
        set { properties[key] = newValue }
    }

    /// This configuration with `defaults` filling keys the user did not set.
    package func with(defaults: [String: String]) -> KafkaClientConfiguration {
        var copy = self
        for (key, value) in defaults where copy.properties[key] == nil { copy.properties[key] = value }
        return copy
    }

    /// A new `rd_kafka_conf_t` holding these properties; the caller owns it.
    func makeConf(context: String) throws(KafkaError) -> OpaquePointer {
        let conf = rd_kafka_conf_new()!
        var errstr = [CChar](repeating: 0, count: 512)
        var properties = properties
        // With an observer, librdkafka's statistics (once a second) say when a broker is up again.
        if observer != nil && properties["statistics.interval.ms"] == nil { properties["statistics.interval.ms"] = "1000" }
        for (key, value) in properties.sorted(by: { $0.key < $1.key }) {
            if rd_kafka_conf_set(conf, key, value, &errstr, errstr.count) != RD_KAFKA_CONF_OK {
                rd_kafka_conf_destroy(conf)
                let message = String(decoding: errstr.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
                throw KafkaError.configuration("property \(key): \(message)", context: context)
            }
        }
        return conf
    }
}

/// Learns when a Kafka client can reach no broker at all and when it reaches one again
/// (called on librdkafka's threads).
package protocol KafkaConnectivityObserver: Sendable {
    func brokersDown(client: String, reason: String)
    func brokersUp(client: String)
}

/// State that librdkafka's callbacks reach through the handle's opaque pointer. The Swift
/// client that creates the handle keeps its context alive until after `rd_kafka_destroy`.
final class KafkaClientContext: Sendable {
    let name: String
    let logger: Logger
    /// Consumers only: the rebalance handling that `rd_kafka_consumer_poll` calls back into.
    let rebalance: RebalanceState?
    let observer: (any KafkaConnectivityObserver)?
    /// True while every broker is down (from the error event until statistics show one up).
    let down = Atomic<Bool>(false)
    /// Producers: notified by every delivery report, each of which frees a place in
    /// librdkafka's queue (a sender that found it full waits for the next one).
    let queueSpace = EventCount()

    init(name: String, logger: Logger, rebalance: RebalanceState? = nil, observer: (any KafkaConnectivityObserver)? = nil) {
        self.name = name
        self.logger = logger
        self.rebalance = rebalance
        self.observer = observer
    }

    /// Installs this context as the opaque and routes librdkafka's log lines and error
    /// events to swift-log.
    func install(on conf: OpaquePointer) {
        rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(self).toOpaque())
        rd_kafka_conf_set_log_cb(conf, kafkaLogCallback)
        rd_kafka_conf_set_error_cb(conf, kafkaErrorCallback)
        if observer != nil { rd_kafka_conf_set_stats_cb(conf, kafkaStatsCallback) }
    }

    static func of(_ rk: OpaquePointer?) -> KafkaClientContext? {
        guard let rk, let opaque = rd_kafka_opaque(rk) else { return nil }
        return Unmanaged<KafkaClientContext>.fromOpaque(opaque).takeUnretainedValue()
    }
}

private func context(of rk: OpaquePointer?) -> KafkaClientContext? { KafkaClientContext.of(rk) }

private let kafkaLogCallback: @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?, UnsafePointer<CChar>?) -> Void = { rk, level, facility, message in
    guard let context = context(of: rk) else { return }
    let text = message.map { String(cString: $0) } ?? ""
    let fac = facility.map { String(cString: $0) } ?? ""
    // CONFWARN only says a shared property does not apply to this kind of client
    // (a consumer setting on a producer): expected with one `kafka.properties` block.
    let swiftLevel: Logger.Level
    switch level {
    case _ where fac == "CONFWARN": swiftLevel = .debug
    // A failed connection, once per broker and retry: the error event for "all brokers
    // down" says it once per outage instead (other failures come as error events too).
    case _ where fac == "FAIL": swiftLevel = .debug
    case 0...3: swiftLevel = .error
    case 4: swiftLevel = .warning
    case 5, 6: swiftLevel = .info
    default: swiftLevel = .debug
    }
    context.logger.log(level: swiftLevel, "librdkafka \(fac): \(text)", metadata: ["client": "\(context.name)"])
}

private let kafkaErrorCallback: @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?, UnsafeMutableRawPointer?) -> Void = { rk, err, reason, _ in
    guard let context = context(of: rk) else { return }
    let text = reason.map { String(cString: $0) } ?? ""
    let error = KafkaError(rd_kafka_resp_err_t(err), context: context.name, message: text)
    if err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN.rawValue {
        // One line when the brokers go, one when they come back (not one per retry).
        if !context.down.exchange(true, ordering: .acquiringAndReleasing) {
            context.logger.error("\(context.name): no Kafka broker reachable (\(text)); retrying")
            context.observer?.brokersDown(client: context.name, reason: text)
        }
        return
    }
    if err == RD_KAFKA_RESP_ERR__TRANSPORT.rawValue || err == RD_KAFKA_RESP_ERR__RESOLVE.rawValue {
        // A lost connection librdkafka retries by itself; ALL_BROKERS_DOWN says when it matters.
        context.logger.debug("\(error)")
        return
    }
    let level: Logger.Level = err == RD_KAFKA_RESP_ERR__FATAL.rawValue ? .critical : .warning
    context.logger.log(level: level, "\(error)")
}

private let upMarker = Data(#""state":"UP""#.utf8)

/// Statistics (JSON, once a second): a broker in state UP ends a "no broker reachable" spell.
private let kafkaStatsCallback: @convention(c) (OpaquePointer?, UnsafeMutablePointer<CChar>?, Int, UnsafeMutableRawPointer?) -> Int32 = { rk, json, length, _ in
    guard let context = context(of: rk), let json, context.down.load(ordering: .acquiring) else { return 0 }
    let found = Data(bytesNoCopy: json, count: length, deallocator: .none).range(of: upMarker) != nil
    if found && context.down.exchange(false, ordering: .acquiringAndReleasing) {
        context.logger.notice("\(context.name): a Kafka broker is reachable again")
        context.observer?.brokersUp(client: context.name)
    }
    return 0
}
