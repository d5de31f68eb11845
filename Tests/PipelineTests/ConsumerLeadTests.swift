import Testing
@testable import GenetikaPipeline
import GenetikaSupport

@Suite("The producer's lead over the consuming stages")
struct ConsumerLeadTests {
    let p0 = TopicPartition("topic1", 0), p1 = TopicPartition("topic1", 1), q0 = TopicPartition("topic2", 0)

    @Test("the lead is the furthest-behind stage's unconsumed events on the partitions it owns; a stage gone counts no more")
    func lead() {
        let lead = ConsumerLead()
        let delivered = [p0: 1000, p1: 500, q0: 9000] as [TopicPartition: Int64]
        #expect(lead.lead(delivered) == 0, "no consuming stage in this process: nothing holds the producer back")
        lead.update("db", [p0: 900, p1: 500, q0: 8000])
        lead.update("acker", [p0: 400])  // owns only topic1[0] (another member has the rest)
        #expect(lead.lead(delivered) == 1100)
        #expect(lead.lead([p0: 1000, p1: 500]) == 600, "per topic: only the partitions asked about")
        lead.update("acker", [p0: 1200])  // beyond what this producer delivered (events of an earlier run)
        #expect(lead.lead([p0: 1000, p1: 500]) == 100)
        lead.remove("db")
        #expect(lead.lead(delivered) == 0)
    }

    @Test("a producer ahead waits until the stage behind catches up, and not past a stop")
    func waits() async throws {
        let lead = ConsumerLead()
        let delivered = [p0: 10_000] as [TopicPartition: Int64]
        lead.update("acker", [p0: 0])
        let released = Task { await lead.wait(whileAbove: 2000, delivered: { delivered }, done: { false }) }
        try await Task.sleep(for: .milliseconds(200))
        lead.update("acker", [p0: 5000])
        try await Task.sleep(for: .milliseconds(100))
        lead.update("acker", [p0: 8000])
        await released.value
        #expect(lead.lead(delivered) == 2000)

        let stop = StopSignal()
        lead.update("acker", [p0: 0])
        let stopped = Task { await lead.wait(whileAbove: 2000, delivered: { delivered }, done: { stop.isRequested }) }
        try await Task.sleep(for: .milliseconds(100))
        stop.request()
        lead.moved.notify()
        await stopped.value
        #expect(lead.lead(delivered) == 10_000)
    }
}
