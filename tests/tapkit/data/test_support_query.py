"""The support / query split rule (tapkit.data.pipeline.split_support_query)."""

import numpy as np
import pytest

from tapkit.data import pipeline


def test_split_takes_queries_first_and_support_from_the_end():
  order = np.asarray([7, 2, 9, 0, 5, 1, 8, 3])
  support, query = pipeline.split_support_query(order, num_support=3, num_query=2)
  np.testing.assert_array_equal(query, [7, 2])
  np.testing.assert_array_equal(support, [1, 8, 3])
  # Fewer remaining tracks than num_support: all of them, in permutation order.
  support, query = pipeline.split_support_query(order, num_support=100, num_query=2)
  np.testing.assert_array_equal(support, [9, 0, 5, 1, 8, 3])
  # A fold in the middle: the support is the end of the other tracks.
  support, query = pipeline.split_support_query(order, num_support=4, num_query=3, start=3)
  np.testing.assert_array_equal(query, [0, 5, 1])
  np.testing.assert_array_equal(support, [2, 9, 8, 3])
  support, query = pipeline.split_support_query(order, num_support=4, num_query=3, start=6)
  np.testing.assert_array_equal(query, [8, 3])
  np.testing.assert_array_equal(support, [9, 0, 5, 1])
  with pytest.raises(ValueError, match='positive'):
    pipeline.split_support_query(order, 0, 2)


def test_sample_support_query_keeps_the_colab_split():
  # With seed 0 the permutation of 6 tracks is fixed: queries its first 2, support its last 3.
  order = np.random.default_rng(0).permutation(6)
  element = {'tracks': np.arange(6 * 4 * 2, dtype=np.float32).reshape(6, 4, 2),
             'visible': np.ones((6, 4), bool)}
  out = pipeline.SampleSupportQuery(3, 2).random_map(element, np.random.default_rng(0))
  np.testing.assert_array_equal(out['query_indices'], order[:2])
  np.testing.assert_array_equal(out['support_indices'], order[3:])
