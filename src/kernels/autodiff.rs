//! Training: [`KernelBackend`] under autodiff. The forward runs the inner backend's kernel and
//! records one backward step, which calls the inner backend's fused backward once for all three
//! gradients (instead of burn's generic decomposition into a transposed convolution and a
//! convolution with the gradient as kernel).

use burn::backend::Autodiff;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::ConvOptions;
use burn::backend::tensor::FloatTensor;

use super::{GroupNormOptions, KeptTiles, KernelBackend};

#[derive(Debug)]
struct Conv2dWithBiasBackward;

impl<B: KernelBackend> Backward<B, 3> for Conv2dWithBiasBackward {
    /// The checkpointed input and weight, the options, and what the forward kept.
    type State = (NodeId, NodeId, ConvOptions<2>, Option<KeptTiles>);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let output_grad = grads.consume::<B>(&ops.node);
        let (x_state, weight_state, options, kept) = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
        let weight = checkpointer.retrieve_node_output::<FloatTensor<B>>(weight_state);
        let (x_grad, weight_grad, bias_grad) =
            B::conv2d_with_bias_backward(x, weight, output_grad, kept, options);
        for (node, grad) in [
            (node_x, x_grad),
            (node_weight, weight_grad),
            (node_bias, bias_grad),
        ] {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

#[derive(Debug)]
struct GroupNormBackward;

impl<B: KernelBackend> Backward<B, 3> for GroupNormBackward {
    /// The checkpointed input, γ and β, and the options.
    type State = (NodeId, NodeId, NodeId, GroupNormOptions);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let output_grad = grads.consume::<B>(&ops.node);
        let (x_state, gamma_state, beta_state, options) = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
        let gamma = checkpointer.retrieve_node_output::<FloatTensor<B>>(gamma_state);
        let beta = checkpointer.retrieve_node_output::<FloatTensor<B>>(beta_state);
        let (x_grad, gamma_grad, beta_grad) =
            B::group_norm_backward(x, gamma, beta, output_grad, options);
        for (node, grad) in [
            (node_x, x_grad),
            (node_gamma, gamma_grad),
            (node_beta, beta_grad),
        ] {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

/// The interleave's gradient is the gradient image cut back into its phases.
#[derive(Debug)]
struct InterleaveBackward;

impl<B: KernelBackend> Backward<B, 4> for InterleaveBackward {
    type State = ();

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (p00, p01, p10, p11) = B::deinterleave_phases(grads.consume::<B>(&ops.node));
        for (node, grad) in ops.parents.into_iter().zip([p00, p01, p10, p11]) {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

impl<B: KernelBackend, C: CheckpointStrategy> KernelBackend for Autodiff<B, C> {
    fn interleave_phases(
        p00: FloatTensor<Self>,
        p01: FloatTensor<Self>,
        p10: FloatTensor<Self>,
        p11: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        InterleaveBackward
            .prepare::<C>([p00.node(), p01.node(), p10.node(), p11.node()])
            .compute_bound()
            .stateless(B::interleave_phases(
                p00.into_primitive(),
                p01.into_primitive(),
                p10.into_primitive(),
                p11.into_primitive(),
            ))
    }

    fn group_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        options: GroupNormOptions,
    ) -> FloatTensor<Self> {
        match GroupNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let gamma_state = prep.checkpoint(&gamma);
                let beta_state = prep.checkpoint(&beta);
                let output = B::group_norm(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    options.clone(),
                );
                prep.finish((x_state, gamma_state, beta_state, options), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::group_norm(
                x.into_primitive(),
                gamma.into_primitive(),
                beta.into_primitive(),
                options,
            )),
        }
    }

    fn conv2d_with_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        match Conv2dWithBiasBackward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                let (output, kept) = B::conv2d_with_bias_keeping(
                    x.into_primitive(),
                    weight.into_primitive(),
                    bias.into_primitive(),
                    options.clone(),
                );
                prep.finish((x_state, weight_state, options, kept), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::conv2d_with_bias(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
                options,
            )),
        }
    }
}
