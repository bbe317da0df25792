// mmu_notifier (mm/mmu_notifier.c), the part drivers use to learn that an address space dies:
// a subscription registered on an mm, its .release called once when the mm is torn down
// (exit_mmap) or when the subscriber unregisters first, and .free_notifier after an SRCU grace
// period when the subscriber puts it (mmu_notifier_put). The SGX driver's merged design hangs its
// encl_mm on one (sgx/EnclaveMMList.swift). docs/sources.md, "SGX driver (arch/x86/kernel/cpu/sgx)".
//
// Invariants: a subscription is on at most one mm's list; .release runs at most once per
// subscription (mmu_notifier_release at teardown or mmu_notifier_unregister, whichever comes
// first); after release the subscription is off the list; .free_notifier runs exactly once per
// put, after a grace period of the notifiers' own SRCU (`Kernel.mmuNotifierSRCU`).
import KeyMMBase

/// The callbacks of a subscription (struct mmu_notifier_ops, the hooks the model calls).
package protocol MMUNotifierOps: AnyObject {
    /// .release: `mm` is being torn down (or the subscriber unregistered before that).
    func release(_ subscription: MMUNotifier, _ mm: MM)
    /// .free_notifier: the subscriber's mmu_notifier_put() completed its grace period.
    func freeNotifier(_ subscription: MMUNotifier)
}

/// struct mmu_notifier: one subscription. It keeps its subscriber (the object it is embedded in,
/// in C) alive until it is freed or unregistered.
package final class MMUNotifier {
    package private(set) var ops: MMUNotifierOps?
    /// The mm it is registered on (nil before registration and after unregister/put).
    package private(set) var mm: MM?
    /// On the mm's list (registered, .release not yet called).
    package fileprivate(set) var hashed = false
    package fileprivate(set) var released = false

    package init(ops: MMUNotifierOps) { self.ops = ops }

    fileprivate func attach(_ mm: MM) { self.mm = mm; hashed = true }
    fileprivate func detach() { mm = nil }
    fileprivate func drop() { ops = nil }
    /// The model's kernel goes away with the subscription still registered: it lets go of its mm and
    /// subscriber (both would otherwise keep each other alive).
    package func breakCycles() { mm = nil; ops = nil }
}

extension Kernel {
    /// __mmu_notifier_register(): subscribes `subscription` to `mm` (the caller holds mmap_lock).
    package func mmuNotifierRegister(_ subscription: MMUNotifier, _ mm: MM) -> Errno? {
        guard subscription.mm == nil else { return .EINVAL }
        subscription.attach(mm)
        mm.mmuNotifiers.append(subscription)
        return nil
    }

    /// mmu_notifier_unregister(): calls .release if the mm has not yet done so, takes the subscription
    /// off the list and waits for the notifiers' grace period.
    package func mmuNotifierUnregister(_ subscription: MMUNotifier, _ mm: MM) {
        if subscription.hashed {
            subscription.hashed = false
            subscription.released = true
            subscription.ops?.release(subscription, mm)
            mm.mmuNotifiers.removeAll { $0 === subscription }
        }
        mmuNotifierSRCU.synchronize {
            subscription.detach()
            subscription.drop()
        }
    }

    /// mmu_notifier_put(): .free_notifier runs after a grace period (the subscription may already be
    /// released: the usual call comes from .release itself).
    package func mmuNotifierPut(_ subscription: MMUNotifier) {
        if subscription.hashed, let mm = subscription.mm {
            subscription.hashed = false
            mm.mmuNotifiers.removeAll { $0 === subscription }
        }
        mmuNotifierSRCU.call {
            subscription.detach()
            subscription.ops?.freeNotifier(subscription)
            subscription.drop()
        }
    }

    /// mmu_notifier_release() at the start of exit_mmap(): every subscription's .release, once.
    func mmuNotifierRelease(_ mm: MM) {
        guard !mm.mmuNotifiers.isEmpty else { return }
        while let s = mm.mmuNotifiers.first(where: { $0.hashed }) {
            s.hashed = false
            s.released = true
            mm.mmuNotifiers.removeAll { $0 === s }
            s.ops?.release(s, mm)
        }
        mm.mmuNotifiers.removeAll()
    }
}
