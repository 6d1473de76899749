//! One command encoder per device collects every launch and copy in program order. Nothing
//! reaches the GPU until a result is read back, `synchronize` is called, or the batch holds
//! [`MAX_COMMANDS`] commands (which bounds the memory held by not-yet-submitted work).
//! wgpu inserts the barriers between dependent passes, so ordering is program order.
pub(crate) const MAX_COMMANDS: usize = 512;

#[derive(Default)]
pub(crate) struct Recorder {
    encoder: Option<wgpu::CommandEncoder>,
    commands: usize,
}

impl Recorder {
    /// The open encoder (created on first use), counting one more command.
    pub(crate) fn encoder(&mut self, device: &wgpu::Device) -> &mut wgpu::CommandEncoder {
        self.commands += 1;
        self.encoder.get_or_insert_with(|| {
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None })
        })
    }

    pub(crate) fn is_full(&self) -> bool {
        self.commands >= MAX_COMMANDS
    }

    /// Sends everything recorded so far to the GPU (does not wait for it); the submission, if
    /// there was anything to send.
    pub(crate) fn submit(&mut self, queue: &wgpu::Queue) -> Option<wgpu::SubmissionIndex> {
        self.commands = 0;
        let encoder = self.encoder.take()?;
        Some(queue.submit([encoder.finish()]))
    }

    /// Drops the recorded work: after a failed command the encoder is unusable.
    pub(crate) fn discard(&mut self) {
        self.encoder = None;
        self.commands = 0;
    }
}
