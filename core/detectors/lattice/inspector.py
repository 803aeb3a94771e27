"""The lattice detector in the exported inspector: the graph twin of :meth:`LatticeDetector.score`."""

from __future__ import annotations

import numpy as np

from core.detectors.common.graph import blur_matrix, largest, roll


class LatticeJudge:
    """The lattice detector (:mod:`core.detectors.lattice.detector`) on a batch, in float64 as numpy computes it: the
    lighting removed, the autocorrelation (a DFT written as real matrix products, which ONNX also runs), the
    strongest non-parallel peaks refined by parabolas, the surface checks, the image compared with itself along
    its vectors (Keys cubic shifts, edges repeated), the median scaling, smoothing and the border rescaling."""

    def __init__(self, tf, detector):
        from core.detectors.lattice import detector as lattice

        self.tf, self.lattice, self.networks = tf, lattice, []
        size = self.size = int(detector.input_size)
        self.directions = int(detector.directions)
        # Gaussian blurs as matrix products (edges repeated): ONNX Runtime has no float64 convolution
        self.lighting = tf.constant(blur_matrix(lattice.LIGHTING_SIGMA * size / 128, size))
        self.smoothing = tf.constant(blur_matrix(detector.map_smoothing(), size))
        angles = 2 * np.pi * np.outer(np.arange(size), np.arange(size)) / size
        self.cosines, self.sines = tf.constant(np.cos(angles)), tf.constant(np.sin(angles))
        self.searched = tf.constant(lattice.search_region(size, size, lattice.SHORTEST_VECTOR,
                                                          lattice.LONGEST_VECTOR_SHARE * size))
        offsets = np.arange(size) - size // 2
        rows, columns = np.meshgrid(offsets, offsets, indexing="ij")
        self.offsets = tf.constant(np.stack([rows.ravel(), columns.ravel()], axis=1).astype(np.float64))
        # dominant_frequency's radial average (a bincount over rounded radii) as one matrix product, the matrix built
        # in the graph from each frequency's radius: as a constant (8 MB at 128 px) it made the SavedModel 8 MB
        # larger and the export 1.5 s slower
        radius = lattice.frequency_radii(size, size).ravel()
        bins = size // 2
        self.radius = tf.constant(np.minimum(radius, bins).astype(np.int32))   # beyond the last bin: one more, cut off
        self.radial_weight = tf.constant(1 / np.maximum(np.bincount(radius, minlength=bins + 1)[:bins + 1], 1.0))
        reference = detector.lattice_reference_
        self.lowest, self.highest = float(reference[:, 0].min()), float(reference[:, 0].max())
        self.weakest = float(reference[:, 1].min())
        self.ring_mean, self.ring_spread = (tf.constant(grid.astype(np.float64))
                                            for grid in detector.border_calibration_.grids(size, size))

    def __call__(self, image):
        tf, size, lattice = self.tf, self.size, self.lattice
        grey = tf.cast(image[:, :, :, 0], tf.float64)
        count_images = tf.shape(grey)[0]
        flat = grey - self._blurred(grey, self.lighting)
        cosines, sines = self.cosines[None], self.sines[None]
        cosine_rows, sine_rows = tf.matmul(cosines, flat), tf.matmul(sines, flat)
        real = tf.matmul(cosine_rows, cosines) - tf.matmul(sine_rows, sines)
        imaginary = -(tf.matmul(sine_rows, cosines) + tf.matmul(cosine_rows, sines))
        power = real * real + imaginary * imaginary
        correlation = (tf.matmul(tf.matmul(cosines, power), cosines) -
                       tf.matmul(tf.matmul(sines, power), sines)) / float(size * size)
        correlation = roll(tf, roll(tf, correlation, 1, size), 2, size)   # fftshift
        centre = correlation[:, size // 2, size // 2][:, None, None]
        correlation = tf.where(centre > 0, correlation / tf.where(centre > 0, centre, 1.0), correlation)
        vectors, heights, chosen = self._vectors(correlation)
        count = tf.reduce_sum(chosen, axis=1)
        strength = tf.reduce_sum(heights * chosen, axis=1) / tf.maximum(count, 1.0)
        radial = tf.matmul(tf.reshape(power, [count_images, size * size]), self._radial_matrix())
        radial = tf.concat([tf.fill([count_images, 3], tf.constant(-1.0, tf.float64)), radial[:, 3:]], axis=1)
        frequency = tf.cast(tf.argmax(radial, axis=1), tf.float64)
        margin = lattice.FREQUENCY_MARGIN
        judged = ((tf.math.reduce_std(flat, axis=[1, 2]) > lattice.FLAT) & (count > 0) &
                  (strength >= lattice.STRENGTH_SHARE * self.weakest) &
                  (frequency >= (1 - margin) * self.lowest) & (frequency <= (1 + margin) * self.highest))
        disagreement = tf.zeros_like(flat)
        for index in range(self.directions):
            vector = vectors[:, index]
            both = tf.minimum(tf.abs(flat - self._shifted(flat, vector)), tf.abs(flat - self._shifted(flat, -vector)))
            disagreement += both * chosen[:, index][:, None, None]
        disagreement /= tf.maximum(count, 1.0)[:, None, None]
        ordered = tf.sort(tf.reshape(disagreement, [count_images, size * size]), axis=1)
        middle = size * size // 2
        typical = (ordered[:, middle - 1] + ordered[:, middle]) / 2 if size * size % 2 == 0 else ordered[:, middle]
        scaled = self._blurred(disagreement / tf.where(typical > 0, typical, 1.0)[:, None, None], self.smoothing)
        judged = judged & (typical > lattice.NO_DISAGREEMENT)
        calibrated = (scaled - self.ring_mean[None]) / self.ring_spread[None]
        anomaly_map = tf.cast(tf.where(judged[:, None, None], calibrated,
                                       tf.constant(lattice.NO_LATTICE, tf.float64)), tf.float32)
        return largest(tf, anomaly_map), anomaly_map

    def _radial_matrix(self):
        """Each frequency's share of the mean of its radius: the matrix numpy's bincount amounts to."""
        tf = self.tf
        bins = self.size // 2
        return (tf.one_hot(self.radius, bins + 1, dtype=tf.float64) * self.radial_weight[None])[:, :bins]

    def _blurred(self, images, blur):
        blur = blur[None]
        return self.tf.matmul(self.tf.matmul(blur, images), blur, transpose_b=True)

    def _vectors(self, correlation):
        """The greedy choice of :func:`core.detectors.lattice.lattice_vectors`, for each image: candidates by
        falling height (ties: row-major order, as numpy's stable sort), each taken when not parallel to those
        taken before. Returns vectors ``(n, k, 2)``, heights ``(n, k)`` and whether each was found ``(n, k)``."""
        tf, size = self.tf, self.size
        neighbours = [roll(tf, roll(tf, correlation, 1, size, dy), 2, size, dx)
                      for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]
        peak = (correlation >= tf.reduce_max(tf.stack(neighbours), axis=0)) & self.searched[None]
        count_images = tf.shape(correlation)[0]
        candidates = min(128, size * size)
        values, flat_index = tf.math.top_k(tf.reshape(tf.where(peak, correlation, -np.inf),
                                                      [count_images, size * size]), candidates)
        valid = tf.math.is_finite(values)
        rows = tf.clip_by_value(flat_index // size, 1, size - 2)
        columns = tf.clip_by_value(flat_index % size, 1, size - 2)

        def at(dy, dx):
            return tf.gather_nd(correlation, tf.stack([rows + dy, columns + dx], axis=2), batch_dims=1)

        def parabola(before, middle, after):
            curvature = before - 2 * middle + after
            offset = 0.5 * (before - after) / tf.where(curvature < 0, curvature, -1.0)
            return tf.where(curvature < 0, tf.clip_by_value(offset, -0.5, 0.5), 0.0)

        middle = at(0, 0)
        refined = tf.gather(self.offsets, flat_index) + tf.stack(
            [parabola(at(-1, 0), middle, at(1, 0)), parabola(at(0, -1), middle, at(0, 1))], axis=2)
        lengths = tf.norm(refined, axis=2)
        order = tf.range(candidates)[None]
        vectors, heights, chosen = [], [], []
        for _ in range(self.directions):
            first = tf.reduce_min(tf.where(valid, order, candidates), axis=1)
            found = first < candidates
            pick = tf.minimum(first, candidates - 1)
            vector = tf.gather(refined, pick, batch_dims=1)
            vectors.append(vector)
            heights.append(tf.where(found, tf.gather(values, pick, batch_dims=1), 0.0))
            chosen.append(tf.cast(found, tf.float64))
            cross = tf.abs(refined[:, :, 0] * vector[:, 1:2] - refined[:, :, 1] * vector[:, 0:1])
            apart = cross > self.lattice.PARALLEL_SINE * lengths * tf.norm(vector, axis=1, keepdims=True)
            valid = tf.where(found[:, None], valid & apart, valid)
        return tf.stack(vectors, axis=1), tf.stack(heights, axis=1), tf.stack(chosen, axis=1)

    def _shifted(self, images, vectors):
        """:func:`core.detectors.lattice.shifted` of each image by its own vector: rows, then columns, four Keys
        taps each, edges repeated."""
        tf, out = self.tf, images
        for axis in (0, 1):
            amount = vectors[:, axis]
            whole = tf.floor(amount)
            fraction = amount - whole
            distances = tf.abs(tf.constant([[-2.0, -1.0, 0.0, 1.0]], tf.float64) + fraction[:, None])
            near = 1.5 * distances ** 3 - 2.5 * distances ** 2 + 1
            far = -0.5 * distances ** 3 + 2.5 * distances ** 2 - 4 * distances + 2
            weights = tf.where(distances <= 1, near, tf.where(distances < 2, far, 0.0))
            indices = tf.range(self.size, dtype=tf.float64)[None] - whole[:, None]
            moved = tf.zeros_like(out)
            for tap in range(4):
                source = tf.cast(tf.clip_by_value(indices + (tap - 2), 0, self.size - 1), tf.int32)
                moved += weights[:, tap][:, None, None] * tf.gather(out, source, axis=axis + 1, batch_dims=1)
            out = moved
        return out
