import unittest

from cart import discounted, total


class Cart(unittest.TestCase):
    def test_total(self):
        self.assertEqual(total([(9.99, 2), (0.5, 3)]), 21.48)

    def test_empty(self):
        self.assertEqual(total([]), 0)

    def test_discount(self):
        self.assertEqual(discounted(21.48, 10), 19.33)

    def test_discount_out_of_range(self):
        with self.assertRaises(ValueError):
            discounted(10, 120)


if __name__ == "__main__":
    unittest.main()
